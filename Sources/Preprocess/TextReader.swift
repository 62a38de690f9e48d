import Foundation

/// A UTF-8 text file: one document, its id the file's name.
final class TextReader: PartReader {
    private let bytes: ByteStream
    private let part: InputPart
    private let settings: ReadSettings
    private var done = false

    init(_ bytes: ByteStream, _ part: InputPart, _ settings: ReadSettings) { self.bytes = bytes; self.part = part; self.settings = settings }

    var bytesRead: Int { bytes.fileOffset }
    var position: String { part.url.location }

    func next() throws -> CorpusRecord? {
        guard !done else { return nil }
        done = true
        return settings.document(try bytes.rest(), id: part.name, origin: part.url.location, part: part, what: "file")
    }
}
