import CLongCrawl
import Dispatch
import Foundation
import Support

/// The GPT-2 byte-level BPE tokenizer, giving the same ids as tiktoken's `gpt2` encoding (`encode_ordinary`).
///
/// Text is split by the GPT-2 pattern (see `preTokenize`); each piece that is a whole token maps directly, the
/// others are merged tiktoken's way: start from single bytes and repeatedly merge the adjacent pair whose joined
/// bytes have the lowest rank, leftmost first. A token's rank is its id.
public final class GPT2Tokenizer: @unchecked Sendable {
    /// Token bytes, concatenated; token `id` is `arena[starts[id] ..< starts[id + 1]]`.
    private let arena: [UInt8]
    private let starts: [Int32]
    private let table: TokenTable

    /// Loads `encoder.json` and `vocab.bpe` from `directory`, checking that they agree (merge `n` of vocab.bpe
    /// is token 256 + n). Errors name the file and what is wrong.
    public convenience init(directory: URL) throws {
        let encoderURL = directory.appendingPathComponent("encoder.json")
        let mergesURL = directory.appendingPathComponent("vocab.bpe")
        guard let encoder = try? Data(contentsOf: encoderURL) else { throw TokenizerError("\(encoderURL.path): cannot read the GPT-2 vocabulary") }
        let vocabulary = try Self.parseEncoder(encoder, name: encoderURL.path)
        guard let merges = try? Data(contentsOf: mergesURL) else { throw TokenizerError("\(mergesURL.path): cannot read the GPT-2 merges") }
        try Self.checkMerges(merges, name: mergesURL.path, against: vocabulary.ids)
        self.init(tokens: vocabulary.tokens)
    }

    /// The vocabulary compiled into the binary: data/gpt2's two files, byte for byte (Sources/CLongCrawl/vocabulary.c).
    public static func builtIn() throws -> GPT2Tokenizer {
        func bytes(_ get: (UnsafeMutablePointer<Int>) -> UnsafePointer<UInt8>?) -> Data {
            var size = 0
            return Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: get(&size)!), count: size, deallocator: .none)
        }
        let vocabulary = try parseEncoder(bytes(lc_gpt2_encoder_json), name: "built-in encoder.json")
        try checkMerges(bytes(lc_gpt2_vocab_bpe), name: "built-in vocab.bpe", against: vocabulary.ids)
        return GPT2Tokenizer(tokens: vocabulary.tokens)
    }

    /// encoder.json's token -> id map, and each id's bytes.
    private static func parseEncoder(_ data: Data, name: String) throws -> (ids: [String: Int], tokens: [[UInt8]]) {
        func fail(_ message: String) -> TokenizerError { TokenizerError("\(name): \(message)") }
        guard let encoder = (try? JSONSerialization.jsonObject(with: data)) as? [String: Int] else {
            throw fail("not a JSON object of token -> id")
        }
        guard encoder.count == GPT2.vocabularySize else { throw fail("\(encoder.count) tokens, expected \(GPT2.vocabularySize)") }
        let decoder = Dictionary(uniqueKeysWithValues: byteToUnicode.enumerated().map { ($1, UInt8($0)) })
        var tokens = [[UInt8]](repeating: [], count: GPT2.vocabularySize)
        for (text, id) in encoder {
            guard id >= 0, id < GPT2.vocabularySize, tokens[id].isEmpty else { throw fail("id \(id) of \(text.debugDescription) is out of range or repeated") }
            if id == Int(GPT2.endOfText) { continue }
            var bytes: [UInt8] = []
            for scalar in text.unicodeScalars {
                guard let b = decoder[scalar] else { throw fail("token \(text.debugDescription) has a character outside the byte alphabet") }
                bytes.append(b)
            }
            tokens[id] = bytes
        }
        guard encoder["<|endoftext|>"] == Int(GPT2.endOfText) else { throw fail("<|endoftext|> is not id \(GPT2.endOfText)") }
        return (encoder, tokens)
    }

    /// Checks that merge `n` of vocab.bpe is token 256 + n: the ranks BPE uses are then the token ids.
    private static func checkMerges(_ data: Data, name: String, against encoder: [String: Int]) throws {
        func fail(_ message: String) -> TokenizerError { TokenizerError("\(name): \(message)") }
        guard let merges = String(data: data, encoding: .utf8) else {
            let line = data.split(separator: 0x0A, omittingEmptySubsequences: false).firstIndex { String(data: Data($0), encoding: .utf8) == nil } ?? 0
            throw fail("line \(line + 1): not UTF-8")
        }
        var lines = merges.split(separator: "\n", omittingEmptySubsequences: true)
        if lines.first?.hasPrefix("#version") == true { lines.removeFirst() }
        guard lines.count == 50_000 else { throw fail("\(lines.count) merges, expected 50000") }
        for (n, line) in lines.enumerated() {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let id = encoder[String(parts[0]) + String(parts[1])], id == 256 + n else {
                throw fail("line \(n + 2): merge '\(line)' is not token \(256 + n) of encoder.json")
            }
        }
    }

    private init(tokens: [[UInt8]]) {
        var arena: [UInt8] = [], starts: [Int32] = []
        for t in tokens { starts.append(Int32(arena.count)); arena += t }
        starts.append(Int32(arena.count))
        self.arena = arena
        self.starts = starts
        table = TokenTable(arena: arena, starts: starts)
    }

    public func encode(_ text: String) -> [UInt16] {
        var text = text
        return text.withUTF8 { encodeValid($0) }
    }

    /// Token ids of UTF-8 bytes. Invalid UTF-8 is first decoded with U+FFFD replacement, the way Python's
    /// `bytes.decode("utf-8", "replace")` does (one U+FFFD per maximal invalid subsequence), then encoded.
    public func encode(bytes: UnsafeBufferPointer<UInt8>) -> [UInt16] {
        if firstInvalidUTF8(bytes) == nil { return encodeValid(bytes) }
        var repaired = String(decoding: bytes, as: UTF8.self)
        return repaired.withUTF8 { encodeValid($0) }
    }

    /// The bytes of `ids` (a cut between tokens may split a UTF-8 sequence).
    public func decode(_ ids: [UInt16]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids where Int(id) < GPT2.vocabularySize {
            out += arena[Int(starts[Int(id)])..<Int(starts[Int(id) + 1])]
        }
        return out
    }

    /// `decode` as a string, invalid UTF-8 replaced by U+FFFD.
    public func decodeString(_ ids: [UInt16]) -> String { String(decoding: decode(ids), as: UTF8.self) }

    /// Encodes documents on `threads` threads; results in input order.
    public func encodeBatch(_ documents: [[UInt8]], threads: Int) -> [[UInt16]] {
        var out = [[UInt16]](repeating: [], count: documents.count)
        let next = NSLock()
        var taken = 0
        out.withUnsafeMutableBufferPointer { results in
            let slots = results.baseAddress!
            let worker = { (_: Int) in
                while true {
                    next.lock(); let i = taken; taken += 1; next.unlock()
                    if i >= documents.count { return }
                    slots[i] = documents[i].withUnsafeBufferPointer { self.encode(bytes: $0) }
                }
            }
            DispatchQueue.concurrentPerform(iterations: max(1, min(threads, documents.count)), execute: worker)
        }
        return out
    }

    private func encodeValid(_ text: UnsafeBufferPointer<UInt8>) -> [UInt16] {
        var out: [UInt16] = []
        out.reserveCapacity(text.count / 3)
        var cache: [ArraySlice<UInt8>: [UInt16]] = [:]
        var bpe = BytePairMerger()
        preTokenize(text) { start, end in
            let piece = UnsafeBufferPointer(rebasing: text[start..<end])
            if let id = table.lookup(piece) { out.append(id); return }
            let key = ArraySlice(piece)
            if let hit = cache[key] { out += hit; return }
            let ids = bpe.merge(piece, table: table)
            if cache.count < 65_536 { cache[key] = ids }
            out += ids
        }
        return out
    }
}

/// A one-line tokenizer error naming the file.
public struct TokenizerError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to themselves, the
/// other 68 to U+0100 onwards in byte order.
let byteToUnicode: [Unicode.Scalar] = {
    var out = [Unicode.Scalar](repeating: "\0", count: 256)
    var extra: UInt32 = 0
    for b in 0..<256 {
        if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
            out[b] = Unicode.Scalar(UInt32(b))!
        } else {
            out[b] = Unicode.Scalar(256 + extra)!
            extra += 1
        }
    }
    return out
}()

/// Offset of the first byte that does not start a valid UTF-8 sequence (overlongs, surrogates and code points above
/// U+10FFFF are invalid), or nil when all of `bytes` is valid UTF-8. ASCII runs are checked eight bytes at a time.
public func firstInvalidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
    guard let base = bytes.baseAddress else { return nil }
    var i = 0
    let n = bytes.count
    while i < n {
        while i + 8 <= n, UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self) & 0x8080_8080_8080_8080 == 0 { i += 8 }
        if i >= n { break }
        let b0 = base[i]
        if b0 < 0x80 { i += 1; continue }
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
        let len: Int
        switch b0 {
        case 0xC2...0xDF: len = 2
        case 0xE0: len = 3; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: len = 3
        case 0xED: len = 3; hi = 0x9F
        case 0xF0: len = 4; lo = 0x90
        case 0xF1...0xF3: len = 4
        case 0xF4: len = 4; hi = 0x8F
        default: return i
        }
        guard i + len <= n, base[i + 1] >= lo, base[i + 1] <= hi else { return i }
        for k in 2..<max(2, len) where base[i + k] & 0xC0 != 0x80 { return i }
        i += len
    }
    return nil
}

/// Open-addressing hash table from token bytes to id.
struct TokenTable {
    private let arena: [UInt8]
    private let starts: [Int32]
    private var slots: [Int32]
    private let mask: Int
    /// Bytes in the longest token: no longer byte string can be one.
    private let longest: Int

    init(arena: [UInt8], starts: [Int32]) {
        self.arena = arena
        self.starts = starts
        let capacity = 1 << 17
        mask = capacity - 1
        longest = (0..<(starts.count - 1)).map { Int(starts[$0 + 1] - starts[$0]) }.max() ?? 0
        slots = [Int32](repeating: -1, count: capacity)
        for id in 0..<(starts.count - 1) where starts[id + 1] > starts[id] {
            arena.withUnsafeBufferPointer { a in
                let bytes = UnsafeBufferPointer(rebasing: a[Int(starts[id])..<Int(starts[id + 1])])
                var h = Self.hash(bytes) & mask
                while slots[h] >= 0 { h = (h + 1) & mask }
                slots[h] = Int32(id)
            }
        }
    }

    @inline(__always)
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        let h = fnv1a(bytes)
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The id of a token whose bytes are exactly `bytes`, if any.
    @inline(__always)
    func lookup(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt16? {
        if bytes.count > longest { return nil }
        var h = Self.hash(bytes) & mask
        return arena.withUnsafeBufferPointer { a -> UInt16? in
            starts.withUnsafeBufferPointer { s -> UInt16? in
                slots.withUnsafeBufferPointer { t -> UInt16? in
                    while true {
                        let id = Int(t[h])
                        if id < 0 { return nil }
                        let lo = Int(s[id]), hi = Int(s[id + 1])
                        if hi - lo == bytes.count, memcmp(a.baseAddress! + lo, bytes.baseAddress!, bytes.count) == 0 { return UInt16(id) }
                        h = (h + 1) & mask
                    }
                }
            }
        }
    }

    /// Rank (= id) of the bytes `p[start ..< end]`, or Int.max when they are not a token.
    @inline(__always)
    func rank(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Int {
        lookup(UnsafeBufferPointer(start: p + start, count: end - start)).map(Int.init) ?? Int.max
    }
}

/// tiktoken's merge rule on one piece: repeatedly join the adjacent pair with the lowest rank, leftmost on ties.
/// Quadratic in the piece length, like tiktoken; pieces are short except in pathological text.
struct BytePairMerger {
    private var bounds: [Int] = []
    private var ranks: [Int] = []

    mutating func merge(_ piece: UnsafeBufferPointer<UInt8>, table: TokenTable) -> [UInt16] {
        let p = piece.baseAddress!
        let n = piece.count
        bounds.removeAll(keepingCapacity: true)
        ranks.removeAll(keepingCapacity: true)
        for i in 0...n { bounds.append(i) }
        // ranks[i]: rank of joining part i with part i+1.
        for i in 0..<(n - 1) { ranks.append(table.rank(p, i, i + 2)) }
        while ranks.count > 0 {
            var best = Int.max, at = -1
            for i in 0..<ranks.count where ranks[i] < best { best = ranks[i]; at = i }
            if at < 0 { break }
            bounds.remove(at: at + 1)
            ranks.remove(at: at)
            if at < ranks.count { ranks[at] = table.rank(p, bounds[at], bounds[at + 2]) }
            if at > 0 { ranks[at - 1] = table.rank(p, bounds[at - 1], bounds[at + 1]) }
        }
        var ids: [UInt16] = []
        ids.reserveCapacity(bounds.count - 1)
        for i in 0..<(bounds.count - 1) { ids.append(UInt16(table.rank(p, bounds[i], bounds[i + 1]))) }
        return ids
    }
}
