import Foundation
import Support

/// WARC records (Common Crawl's WET files): headers up to a blank line, then `Content-Length` bytes. Only
/// conversion records hold a document; a short one is skipped unread.
final class WARCReader: PartReader {
    private let bytes: ByteStream
    private let part: InputPart
    private let settings: ReadSettings

    init(_ bytes: ByteStream, _ part: InputPart, _ settings: ReadSettings) { self.bytes = bytes; self.part = part; self.settings = settings }

    var bytesRead: Int { bytes.fileOffset }
    var position: String { "\(part.url.location):\(bytes.lineNumber + 1)" }

    func next() throws -> CorpusRecord? {
        while true {
            var line = try bytes.nextLine()
            while line?.isEmpty == true { line = try bytes.nextLine() }
            guard let version = line else { return nil }
            let at = "\(part.url.location):\(bytes.lineNumber)"
            guard version.starts(with: Array("WARC/".utf8)) else { throw FileError(part.url, "line \(bytes.lineNumber): expected a WARC record header") }
            var headers: [String: String] = [:]
            while let h = try bytes.nextLine(), !h.isEmpty {
                guard let colon = h.firstIndex(of: UInt8(ascii: ":")) else { continue }
                let key = String(decoding: h[..<colon], as: UTF8.self).lowercased()
                headers[key] = String(decoding: h[(colon + 1)...], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            }
            guard let length = headers["content-length"].flatMap({ Int($0) }), length >= 0 else {
                throw FileError(part.url, "line \(bytes.lineNumber): WARC record without a valid Content-Length")
            }
            let conversion = headers["warc-type"] == "conversion"
            if !conversion || (length > 0 && length < settings.minTextBytes) {
                let skipped = try bytes.skip(length)
                guard skipped == length else { throw FileError(part.url, "WARC record at \(at) truncated (\(skipped) of \(length) bytes)") }
                if conversion { return settings.dropped(at, .tooShort, "", bytes: length) }
                continue
            }
            let content = try bytes.next(length)
            guard content.count == length else { throw FileError(part.url, "WARC record at \(at) truncated (\(content.count) of \(length) bytes)") }
            return settings.document(content, id: headers["warc-record-id"] ?? "\(part.name):\(bytes.lineNumber)", origin: at, part: part,
                                     what: "WARC record")
        }
    }
}
