import Foundation
import Support

/// JSONL: one JSON object a line, the text and id at their field paths. Lines are checked against the JSON
/// grammar without building objects (`JSONLineScanner`), and a text shorter than `minTextBytes` is dropped from
/// its length before its escapes are decoded: most web documents are never copied.
final class JSONLReader: PartReader {
    private let bytes: ByteStream
    private let part: InputPart
    private let settings: ReadSettings
    private let scanner: JSONLineScanner
    private let what: String

    init(_ bytes: ByteStream, _ part: InputPart, _ settings: ReadSettings) {
        self.bytes = bytes; self.part = part; self.settings = settings
        scanner = JSONLineScanner(paths: [settings.textField] + (settings.idField.map { [$0] } ?? []), loneSurrogates: settings.loneSurrogates)
        what = "\"\(settings.textField)\""
    }

    var bytesRead: Int { bytes.fileOffset }
    var position: String { "\(part.url.location):\(bytes.lineNumber + 1)" }

    func next() throws -> CorpusRecord? {
        guard let line = try bytes.nextLine() else { return nil }
        return line.withUnsafeBufferPointer { record($0, number: bytes.lineNumber) }
    }

    private func record(_ line: UnsafeBufferPointer<UInt8>, number: Int) -> CorpusRecord {
        let origin = "\(part.url.location):\(number)"
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return settings.dropped(origin, .empty, "blank line") }
        let fields: [JSONField?]
        do { fields = try scanner.scan(line) } catch {
            let message = "\(error)"
            return settings.dropped(origin, .unreadable, message == "not a JSON object" ? message : "not JSON (\(message))")
        }
        guard case .string(let range, let length, let escaped)? = fields[0] else {
            let detail = fields[0] == nil ? "has no \(what) field" : "\(what) is not a string"
            return settings.dropped(origin, .unreadable, detail)
        }
        if let drop = settings.dropByLength(length, origin: origin, what: what) { return drop }
        // The escape's length measured on the line as it is: each of its escapes (`\n`, `\u00e9`, `\/`) is at least
        // as long as json.dumps writes the character back, so this bounds the escaped text's length from above and
        // a short text is dropped before it is unescaped.
        if let least = settings.minEscapedBytes, JSONText.escapedLength(UnsafeBufferPointer(rebasing: line[range])) < least {
            return settings.dropped(origin, .tooShort, "", bytes: length)
        }
        let text: [UInt8]
        do { text = escaped ? try JSONLineScanner.unescape(line, range, capacity: length, loneSurrogates: settings.loneSurrogates) : Array(line[range]) } catch {
            return settings.dropped(origin, .unreadable, "not JSON (\(error))")
        }
        return settings.document(text, id: id(fields.count > 1 ? fields[1] : nil, line) ?? part.rpv2?.id(line: number) ?? "\(part.name):\(number)",
                                 origin: origin, part: part, what: what)
    }

    /// The id as a string: a JSON string decoded, a number's literal (an integer) or shortest decimal form; nil
    /// for absent and any other value.
    private func id(_ field: JSONField?, _ line: UnsafeBufferPointer<UInt8>) -> String? {
        switch field {
        case .string(let range, _, let escaped)?:
            let utf8 = escaped ? (try? JSONLineScanner.unescape(line, range)) ?? [] : Array(line[range])
            return String(decoding: utf8, as: UTF8.self)
        case .number(let range)?:
            let literal = String(decoding: UnsafeBufferPointer(rebasing: line[range]), as: UTF8.self)
            if Int(literal) != nil { return literal }
            guard let d = Double(literal) else { return literal }
            return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
        default: return nil
        }
    }
}
