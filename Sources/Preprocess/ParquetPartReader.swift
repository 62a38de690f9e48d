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
        let reader = try ParquetReader(url: part.url, textColumn: settings.textField, idColumn: settings.idField)
        first = (0..<part.group).reduce(0) { $0 + reader.rowCount(group: $1) }
        rows = ArraySlice(try reader.readRowGroup(part.group, minTextBytes: settings.minTextBytes))
        bytes = reader.byteSize(group: part.group)
        self.part = part; self.settings = settings
    }

    var bytesRead: Int { rows.isEmpty ? bytes : 0 }
    var position: String { part.url.path }

    func next() throws -> CorpusRecord? {
        guard let row = rows.popFirst() else { return nil }
        let number = first + rows.startIndex - 1
        let origin = "\(part.url.path):\(number)"
        let what = "\"\(settings.textField)\""
        guard let length = row.textBytes else { return settings.dropped(origin, .empty, "null \(what)", bytes: 0) }
        guard let text = row.text else {
            return settings.dropByLength(length, origin: origin, what: what) ?? settings.dropped(origin, .tooShort, "", bytes: length)
        }
        return settings.document(text, id: row.id ?? "\(part.name):\(number)", origin: origin, part: part, what: what)
    }
}
