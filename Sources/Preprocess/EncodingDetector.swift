import Support
import Tokenizer

/// Classifies rows of GPT-2 tokens made by someone else as raw text or LongCrawl64's JSON-escaped text
/// (`TextEncoding.detect` decides over all rows). Escaped text is printable ASCII only, so a token holding a newline,
/// another control character or a byte above 0x7E proves a row raw; a row of printable tokens with a JSON escape
/// (a backslash and one of `"\/bfnrtu`, possibly across two tokens) is evidence of json.
struct EncodingDetector: Sendable {
    enum Row { case raw, escaped, neither }

    /// Per token id: its bytes hold a byte that JSON-escaped text never has.
    private let rawToken: [Bool]
    private let tokenBytes: [[UInt8]]

    init(tokenizer: GPT2Tokenizer) {
        tokenBytes = (0..<GPT2.vocabularySize).map { tokenizer.decode([UInt16($0)]) }
        rawToken = tokenBytes.map { $0.contains { $0 < 0x20 || $0 > 0x7E } }
    }

    func classify(_ row: UnsafeBufferPointer<UInt16>) -> Row {
        let vocabulary = rawToken.count
        for t in row where Int(t) < vocabulary && rawToken[Int(t)] { return .raw }
        var backslash = false
        for t in row where Int(t) < vocabulary {
            for b in tokenBytes[Int(t)] {
                if backslash, Self.escapeLetters.contains(b) { return .escaped }
                backslash = b == 0x5C
            }
        }
        return .neither
    }

    private static let escapeLetters: Set<UInt8> = Set(#""\/bfnrtu"#.utf8)
}
