import ArgumentParser
import Foundation
import Shards
import Streaming
import Support

/// `longcrawl inspect DIR`: what a dataset folder holds.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Counts, sizes, compression ratio and split sizes of a dataset, and a few decoded lines of one window.",
        discussion: """
        Examples:
          longcrawl inspect out/sample
          longcrawl inspect out/sample --split heldout --window 0 --lines 10
          longcrawl inspect out/sample --split train --raw train.u16   (every window read back, for corruption checks)
        """
    )

    @Argument(help: "Dataset folder (holding index.json).")
    var dataset: String

    @Option(help: "Split of the window to show.")
    var split: Split = .train

    @Option(help: "Window (0-based, over the split's shards in order) to decode.")
    var window: Int = 0

    @Option(help: "Lines of the window's text to print (0: none).")
    var lines: Int = 5

    @OptionGroup var tokenizer: TokenizerOption

    @Option(help: "Write every window of --split through the training reader, as little-endian uint16 in window order, to this file; a window that fails to read is left out and named on stderr (exit status 1).")
    var raw: String?

    func run() throws {
        let dir = URL(fileURLWithPath: dataset)
        if let raw { return try dump(dir, to: URL(fileURLWithPath: raw)) }
        let index = try DatasetIndex.load(from: dir)
        print("dataset    \(dir.path)\(index.complete ? "" : "  (INCOMPLETE: preprocessing did not finish; --resume it)")")
        print("tokenizer  \(index.tokenizer) (vocabulary \(index.vocabSize)), window \(index.window) tokens, created \(index.created)")
        print(describeTextEncoding(index))
        let formats = Set(index.shards.map(\.format.rawValue)).sorted().joined(separator: ", ")
        print("shards     \(index.shards.count) (\(formats.isEmpty ? "none" : formats))")
        var totalRaw = 0, totalBytes = 0
        for s in Set(index.shards.map(\.split)).sorted(by: { $0.rawValue > $1.rawValue }) {
            let shards = index.shards.filter { $0.split == s }
            let windows = shards.reduce(0) { $0 + $1.windows }
            let bytes = shards.reduce(0) { $0 + $1.bytes }
            let raw = windows * windowLength * 2
            totalRaw += raw; totalBytes += bytes
            print(s.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0) + String(format: " %d windows, %d tokens, %d shards, %@ on disk, compression %.2fx", windows,
                         windows * windowLength, shards.count, formatBytes(bytes), Double(raw) / Double(max(bytes, 1))))
        }
        if totalBytes > 0 { print(String(format: "total      %@ on disk for %@ of uint16 tokens: %.2fx", formatBytes(totalBytes), formatBytes(totalRaw), Double(totalRaw) / Double(totalBytes))) }
        if let build = index.build {
            print("inputs     \(build.inputs.joined(separator: " "))")
            print("options    " + build.options.keys.sorted().map { "\($0)=\(build.options[$0]!)" }.joined(separator: " "))
            if index.complete { printFunnel(build) }
        }
        guard lines > 0 else { return }

        // Find the window in the split's shards, in index order.
        var k = window
        guard k >= 0 else { throw ValidationError("--window must be >= 0") }
        for entry in index.shards where entry.split == split {
            if k >= entry.windows { k -= entry.windows; continue }
            let reader = try ShardReader(entry: entry, in: dir, checkDigest: true)
            var tokens = [UInt16](repeating: 0, count: windowLength)
            try tokens.withUnsafeMutableBufferPointer { try reader.readWindow(k, into: $0) }
            let source = reader.sources[k]
            let tok = try tokenizer.load()
            // In document order (a rolled window's first document token is at column `roll`), as text.
            let bytes = tok.decode(Array((tokens[source.roll...] + tokens[..<source.roll]).prefix(2048)))
            let text = String(decoding: (index.textEncoding ?? .raw).decode(bytes), as: UTF8.self)
            print("\n\(split) window \(window) = \(entry.file)[\(k)]: document \"\(source.document)\" from token \(source.offset)")
            let rolled = reader.sources.filter { $0.roll != 0 }.count
            if rolled > 0 {
                print("roll \(source.roll): stored as numpy.roll(window, \(source.roll)), shown from column \(source.roll) " +
                      "(\(rolled) of \(reader.windowCount) windows of \(entry.file) rolled)")
            }
            for line in text.split(separator: "\n", omittingEmptySubsequences: true).prefix(lines) {
                print("  | " + line.prefix(160))
            }
            return
        }
        throw ValidationError("\(split) has \(index.windows(split: split)) windows; --window \(window) is out of range")
    }

    /// What the training reader returns for each window of the split: the ground truth of `tools/torture.py`,
    /// which asks whether a damaged shard can ever give wrong tokens instead of an error.
    private func dump(_ dir: URL, to url: URL) throws {
        let catalog = try WindowCatalog(directory: dir, split: split)
        guard FileManager.default.createFile(atPath: url.path, contents: nil), let out = FileHandle(forWritingAtPath: url.path) else {
            throw ValidationError("\(url.path): cannot create")
        }
        defer { try? out.close() }
        var failed = 0
        for id in 0..<catalog.count {
            do { try out.write(contentsOf: try catalog.read(id).withUnsafeBytes { Data($0) }) } catch {
                FileHandle.standardError.write(Data("window \(id): \(error)\n".utf8))
                failed += 1
            }
        }
        if failed > 0 { throw ExitCode(1) }
    }
}

/// The `text` line of `inspect` and `import`: the dataset's text encoding and how it is known.
func describeTextEncoding(_ index: DatasetIndex) -> String {
    let name = index.textEncoding.map { $0 == .json ? "json (LongCrawl64's JSON-escaped text)" : "raw" } ?? "undecided (shown as raw)"
    return "text       \(name)" + (index.textEncodingEvidence.map { ": \($0)" } ?? "")
}

/// The build's counters in funnel order (`records`, each stage's drops, `kept`), each with its share of the
/// records and what is left after it, then the length histogram of the documents read and kept.
func printFunnel(_ build: BuildRecord) {
    let c = build.counts
    // Every index loaded has its funnel (`DatasetIndex.upgrade` gives the first ones theirs).
    guard var order = build.funnel, !order.isEmpty else { return }
    // Counters outside the stages (an import's row-chunk count, its text-encoding evidence) are listed, not subtracted.
    let stages = Set(order)
    order += c.counters.keys.filter { !order.contains($0) }.sorted()
    let total = max(c[order[0]], 1)
    var left = c[order[0]]
    print("funnel     " + "stage".padding(toLength: 28, withPad: " ", startingAt: 0) + "   records        share         left")
    for key in order where key == order[0] || c[key] > 0 || key == order.last {
        if stages.contains(key), key.hasPrefix("dropped_") || key.hasPrefix("skipped_") { left -= c[key] }
        print("           " + key.padding(toLength: 28, withPad: " ", startingAt: 0) +
              String(format: " %10d %10.3f%% %12d", c[key], 100 * Double(c[key]) / Double(total), left))
    }
    let bins = max(c.lengthsRead.count, c.lengthsKept.count)
    guard bins > 0 else { return }
    print("lengths    UTF-8 bytes                        read         kept")
    for b in 0..<bins {
        let read = b < c.lengthsRead.count ? c.lengthsRead[b] : 0, kept = b < c.lengthsKept.count ? c.lengthsKept[b] : 0
        guard read > 0 || kept > 0 else { continue }
        let range = b == 0 ? "[0, 2)" : "[\(binBytes(b)), \(binBytes(b + 1)))"
        print("           " + range.padding(toLength: 28, withPad: " ", startingAt: 0) + String(format: " %12d %12d", read, kept))
    }
}

/// 2^b bytes with binary units: `64 KiB`.
private func binBytes(_ b: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    return "\(1 << (b % 10)) \(units[min(b / 10, units.count - 1)])"
}

/// One line: records, kept, and every drop by name.
func funnelSummary(_ build: BuildRecord) -> String {
    let c = build.counts
    let drops = (build.funnel ?? c.counters.keys.sorted()).filter { $0.hasPrefix("dropped_") && c[$0] > 0 }
    return "records \(c["records"]): kept \(c["kept"])" + (drops.isEmpty ? "" : "; dropped: " + drops.map { "\(c[$0]) \($0.dropFirst(8).replacingOccurrences(of: "_", with: " "))" }.joined(separator: ", "))
}
