import Foundation

/// One row group of a parquet file: rows in order, ids `file:row` (rows from 0 over the file) unless the id
/// column has one. A value shorter than `minTextBytes` is dropped from its length, never copied.
final class ParquetPartReader: PartReader {
    private let part: InputPart
    private let settings: ReadSettings
    private var rows: ArraySlice<ParquetRow>
    private let first: Int
    private let bytes: Int

    init(_ part: InputPart, _ settings: ReadSettings) throws {
        let reader = try settings.parquetFiles.reader(part.url, textColumn: settings.textField, idColumn: settings.idField)
        first = (0..<part.group).reduce(0) { $0 + reader.rowCount(group: $1) }
        rows = ArraySlice(try reader.readRowGroup(part.group, minTextBytes: settings.minTextBytes))
        bytes = reader.byteSize(group: part.group)
        self.part = part; self.settings = settings
    }

    var bytesRead: Int { rows.isEmpty ? bytes : 0 }
    var position: String { part.url.location }

    func next() throws -> CorpusRecord? {
        guard let row = rows.popFirst() else { return nil }
        let number = first + rows.startIndex - 1
        let origin = "\(part.url.location):\(number)"
        let what = "\"\(settings.textField)\""
        guard let length = row.textBytes else { return settings.dropped(origin, .empty, "null \(what)", bytes: 0) }
        guard let text = row.text else {
            return settings.dropByLength(length, origin: origin, what: what) ?? settings.dropped(origin, .tooShort, "", bytes: length)
        }
        return settings.document(text, id: row.id ?? "\(part.name):\(number)", origin: origin, part: part, what: what)
    }
}

/// The parquet files opened last, footers parsed: a file's row groups are parts read one after another (on any
/// thread), and each would parse the whole footer again, quadratic in the row groups (FineWeb's files hold
/// hundreds). One per run (`ReadSettings`), holding at most `capacity` files open.
final class ParquetFiles: @unchecked Sendable {  // `recent` and `opened` only under `lock`
    private let lock = NSLock()
    private var recent: [(key: String, reader: ParquetReader)] = []
    private let capacity: Int
    /// Footers parsed so far (a test counts them).
    private(set) var opened = 0

    init(capacity: Int = 8) { self.capacity = capacity }

    /// The reader of `url` for these columns, its footer parsed once while it stays among the last `capacity` used.
    func reader(_ url: URL, textColumn: String, idColumn: String?) throws -> ParquetReader {
        let key = [url.path, textColumn, idColumn ?? ""].joined(separator: "\u{0}")
        lock.lock()
        if let i = recent.firstIndex(where: { $0.key == key }) {
            let hit = recent.remove(at: i)
            recent.append(hit)
            lock.unlock()
            return hit.reader
        }
        lock.unlock()
        let reader = try ParquetReader(url: url, textColumn: textColumn, idColumn: idColumn)
        lock.lock()
        defer { lock.unlock() }
        opened += 1
        recent.append((key, reader))
        if recent.count > capacity { recent.removeFirst() }
        return reader
    }
}
