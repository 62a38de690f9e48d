import FuzzSupport
@testable import Support
@testable import Preprocess

/// The input as a parquet file: the footer, then every row group's text column ("text") and id column ("id", else
/// "metadata.id"), read in full and again with `minTextBytes` 16. An error must be a one-line FileError naming the
/// file, and the two reads must agree: the same error or none, the same lengths, the long values equal.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let url = writeInput(input(start, count), to: "input.parquet")
    func read<T>(_ body: () throws -> T) -> T? {
        do { return try body() } catch {
            let message = "\(error)"
            guard error is FileError, message.hasPrefix(url.path + ": "), !message.contains("\n") else { fatalError("not a one-line FileError: \(message)") }
            return nil
        }
    }
    guard var reader = read({ try ParquetReader(url: url, textColumn: "text", idColumn: "id") }) else { return 0 }
    if reader.id == nil, let nested = read({ try ParquetReader(url: url, textColumn: "text", idColumn: "metadata.id") }) { reader = nested }
    for g in 0..<reader.rowGroupCount {
        let all = read { try reader.readRowGroup(g) }, long = read { try reader.readRowGroup(g, minTextBytes: 16) }
        guard let all, let long else {
            precondition(all == nil && long == nil, "row group \(g): one read failed, the other did not")
            continue
        }
        precondition(all.count == reader.rowCount(group: g) && long.count == all.count, "row group \(g): row counts differ")
        for (a, b) in zip(all, long) {
            precondition(a.textBytes == a.text?.count && b.textBytes == a.textBytes && a.id == b.id, "row group \(g): reads differ")
            precondition(b.text == a.text.flatMap { $0.count >= 16 ? $0 : nil }, "row group \(g): kept values differ")
        }
    }
    return 0
}
