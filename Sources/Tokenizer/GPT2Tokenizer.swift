import CLongCrawl
import Dispatch
import Foundation
import Support

/// The GPT-2 byte-level BPE tokenizer, giving the same ids as tiktoken's `gpt2` encoding (`encode_ordinary`).
///
/// Text is split by the GPT-2 pattern (see `preTokenize`); each piece that is a whole token maps directly, the
/// others are merged tiktoken's way: start from single bytes and repeatedly merge the adjacent pair whose joined
/// bytes have the lowest rank, leftmost first. A token's rank is its id (see `PairTable` for how merging runs in
/// ids, and in linear time on long pieces).
///
/// What a piece costs, in order: a probe of the memo's `recent` table (pieces of at most 8 bytes, one L2-resident
/// probe, nine in ten pieces); the token table (`TokenTable`, every token's bytes -> id, as tiktoken's whole-piece
/// lookup); the memo's `PieceCache` (pieces of several tokens merged before); a merge. Both memo tables have a fixed
/// size (`TokenizerMemo.maxHeldBytes`), so memory does not grow with the text.
public final class GPT2Tokenizer: Sendable {
    private let table: TokenTable
    let pairs: PairTable

    /// Loads `encoder.json` and `vocab.bpe` from `directory`, checking that they agree (merge `n` of vocab.bpe
    /// is token 256 + n). Errors name the file and what is wrong.
    public convenience init(directory: URL) throws {
        let encoderURL = directory.appendingPathComponent("encoder.json")
        let mergesURL = directory.appendingPathComponent("vocab.bpe")
        guard let encoder = try? Data(contentsOf: encoderURL) else { throw LongCrawlError("\(encoderURL.path): cannot read the GPT-2 vocabulary") }
        let vocabulary = try Self.parseEncoder(encoder, name: encoderURL.path)
        guard let merges = try? Data(contentsOf: mergesURL) else { throw LongCrawlError("\(mergesURL.path): cannot read the GPT-2 merges") }
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
        func fail(_ message: String) -> LongCrawlError { LongCrawlError("\(name): \(message)") }
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
        func fail(_ message: String) -> LongCrawlError { LongCrawlError("\(name): \(message)") }
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
        let table = TokenTable(tokens: tokens)
        self.table = table
        pairs = PairTable(tokens: tokens) { table.lookup($0, hash: TokenTable.hash($0)) }
    }

    public func encode(_ text: String) -> [UInt16] {
        var text = text
        var memo = TokenizerMemo()
        return text.withUTF8 { encodeValid($0, memo: &memo) }
    }

    /// Token ids of UTF-8 bytes. Invalid UTF-8 is first decoded with U+FFFD replacement, the way Python's
    /// `bytes.decode("utf-8", "replace")` does (one U+FFFD per maximal invalid subsequence), then encoded.
    public func encode(bytes: UnsafeBufferPointer<UInt8>) -> [UInt16] {
        var memo = TokenizerMemo()
        return encode(bytes: bytes, memo: &memo)
    }

    /// `encode(bytes:)` remembering BPE results in `memo`, which one thread carries from document to document: a
    /// piece merged once is looked up after that, in this and every later call. The ids are the same.
    public func encode(bytes: UnsafeBufferPointer<UInt8>, memo: inout TokenizerMemo) -> [UInt16] {
        if firstInvalidUTF8(bytes) == nil { return encodeValid(bytes, memo: &memo) }
        var repaired = String(decoding: bytes, as: UTF8.self)
        return repaired.withUTF8 { encodeValid($0, memo: &memo) }
    }

    /// The bytes of `ids` (a cut between tokens may split a UTF-8 sequence).
    public func decode(_ ids: [UInt16]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids where Int(id) < GPT2.vocabularySize { out += table.bytes(Int(id)) }
        return out
    }

    /// `decode` as a string, invalid UTF-8 replaced by U+FFFD.
    public func decodeString(_ ids: [UInt16]) -> String { String(decoding: decode(ids), as: UTF8.self) }

    /// Token ids of valid UTF-8, BPE results memoized in a fresh `PieceCache` of at most `cacheLimit` pieces (a
    /// parameter so tests can shrink or disable it).
    func encodeValid(_ text: UnsafeBufferPointer<UInt8>, cacheLimit: Int) -> [UInt16] {
        var memo = TokenizerMemo(limit: cacheLimit)
        return encodeValid(text, memo: &memo)
    }

    /// Token ids of valid UTF-8, BPE results memoized in `memo`.
    ///
    /// A piece of at most 8 bytes (nine in ten) is first looked up in `memo.recent`, one probe of a table that fits
    /// in L2; on a miss it takes the long way (the token table, then the piece cache, then a merge) and its ids go
    /// into `recent` when there are at most three. The token table alone is 2 MiB, and a probe of it was the
    /// largest single cost per piece (a cache miss).
    func encodeValid(_ text: UnsafeBufferPointer<UInt8>, memo: inout TokenizerMemo) -> [UInt16] {
        let table = self.table, pairs = self.pairs
        var out: [UInt16] = []
        guard let base = text.baseAddress else { return out }
        out.reserveCapacity(text.count / 3)
        let count = text.count
        var recent: [UInt64] = []
        swap(&recent, &memo.recent)
        defer { swap(&recent, &memo.recent) }
        recent.withUnsafeMutableBufferPointer { recent in
            let slots = recent.baseAddress!
            preTokenize(text) { start, end in
                let piece = UnsafeBufferPointer(start: base + start, count: end - start)
                let n = piece.count
                var slot: UnsafeMutablePointer<UInt64>? = nil
                var key: UInt64 = 0
                if n <= 8 {
                    if start + 8 <= count {
                        key = UnsafeRawPointer(base + start).loadUnaligned(as: UInt64.self) & (UInt64.max >> (64 - 8 * n))
                    } else {
                        for i in 0..<n { key |= UInt64(base[start + i]) << (8 * i) }
                    }
                    let s = slots + 2 * Int(truncatingIfNeeded: ((key ^ UInt64(n)) &* 0x9E37_79B9_7F4A_7C15) >> (64 - TokenizerMemo.recentBits))
                    let meta = s[1]
                    if s[0] == key, meta & 0xFF == UInt64(n) {
                        if meta & TokenizerMemo.used == 0 { s[1] = meta | TokenizerMemo.used }
                        out.append(UInt16(truncatingIfNeeded: meta >> 16))
                        let ids = meta >> 8 & 3
                        if ids > 1 { out.append(UInt16(truncatingIfNeeded: meta >> 32)) }
                        if ids > 2 { out.append(UInt16(truncatingIfNeeded: meta >> 48)) }
                        return
                    }
                    slot = s
                }
                let first = out.count
                let hash = TokenTable.hash(piece)
                if let id = table.lookup(piece, hash: hash) { out.append(id) }
                else if !memo.cache.append(piece, hash: hash, to: &out) {
                    pairs.merge(piece, into: &out)
                    memo.cache.insert(piece, hash: hash, ids: out[first...])
                }
                if let s = slot, s[1] & TokenizerMemo.used != 0 {
                    s[1] &= ~TokenizerMemo.used
                } else if let s = slot, out.count - first <= 3 {
                    var meta = UInt64(n) | UInt64(out.count - first) << 8
                    for (k, id) in out[first...].enumerated() { meta |= UInt64(id) << (16 + 16 * k) }
                    s[0] = key
                    s[1] = meta
                }
            }
        }
        return out
    }
}

/// What `encode(bytes:memo:)` keeps between calls on one thread: the BPE results of the pieces met so far (at
/// most 65,536 pieces of at most 256 bytes, 1 MiB of their bytes; then it starts over).
public struct TokenizerMemo {
    var cache: PieceCache
    /// The ids of recently met pieces of at most 8 bytes and 3 tokens, direct-mapped by a hash of their bytes:
    /// slot `s` is `recent[2 s]` = the piece's bytes (little-endian, zero-padded) and `recent[2 s + 1]` = its length,
    /// id count, `used` and ids (8, 7, 1, 3 x 16 bits); length 0 is an empty slot. A piece that misses takes the slot
    /// unless its piece was found there since the last miss (then it only clears `used`): one bit of second chance,
    /// so that the long tail of rare pieces does not keep evicting the frequent ones.
    var recent = [UInt64](repeating: 0, count: 2 << recentBits)
    static let recentBits = 14
    static let used: UInt64 = 0x8000

    public init() { self.init(limit: 65_536) }
    init(limit: Int) { cache = PieceCache(limit: limit) }

    /// Bytes of memory the memo holds.
    var heldBytes: Int { cache.heldBytes + recent.capacity * 8 }
    /// The most `heldBytes` can be, whatever the text: each array of the piece cache at most twice its capped count.
    static let maxHeldBytes = 2 * (PieceCache.slotCount(65_536) * 4 + 3 * 8 * 65_537 + 3 * PieceCache.maxKeyBytes) + 16 << recentBits
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

/// Whether `a[0 ..< n]` equals `b[0 ..< n]`: pieces are a few bytes, where a call to memcmp costs more than the
/// comparison.
@inline(__always)
func equalBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var i = 0
    while i + 8 <= n {
        if UnsafeRawPointer(a + i).loadUnaligned(as: UInt64.self) != UnsafeRawPointer(b + i).loadUnaligned(as: UInt64.self) { return false }
        i += 8
    }
    while i < n {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}

/// Open-addressing hash table from token bytes to id, also holding each token's bytes. Its storage is raw memory
/// it owns: lookups are the tokenizer's inner loop, where array accessors cost retains and checks.
/// Sendable by hand: its memory is written only in `init` and only read after.
final class TokenTable: @unchecked Sendable {
    /// Token bytes, concatenated; token `id` is `arena[starts[id] ..< starts[id + 1]]`.
    private let arena: UnsafeMutablePointer<UInt8>
    private let starts: UnsafeMutablePointer<Int32>
    /// Per slot: a token's id (-1 when empty), its length and its first 8 bytes, so that a lookup of a piece of at
    /// most 8 bytes (nearly all of them) touches one cache line, not the slot, `starts` and the arena in turn.
    private let slots: UnsafeMutablePointer<Slot>
    struct Slot { var prefix: UInt64; var id: Int32; var length: Int32 }
    private let mask: Int
    /// Bytes in the longest token: no longer byte string can be one.
    private let longest: Int

    init(tokens: [[UInt8]]) {
        let arena = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, tokens.reduce(0) { $0 + $1.count }))
        let starts = UnsafeMutablePointer<Int32>.allocate(capacity: tokens.count + 1)
        var end = 0
        for (id, t) in tokens.enumerated() {
            starts[id] = Int32(end)
            for b in t { arena[end] = b; end += 1 }
        }
        starts[tokens.count] = Int32(end)
        let capacity = 1 << 17
        let slots = UnsafeMutablePointer<Slot>.allocate(capacity: capacity)
        slots.initialize(repeating: Slot(prefix: 0, id: -1, length: 0), count: capacity)
        for (id, t) in tokens.enumerated() where !t.isEmpty {
            var h = t.withUnsafeBufferPointer(Self.hash) & (capacity - 1)
            while slots[h].id >= 0 { h = (h + 1) & (capacity - 1) }
            slots[h] = Slot(prefix: t.withUnsafeBufferPointer(Self.prefix), id: Int32(id), length: Int32(t.count))
        }
        (self.arena, self.starts, self.slots) = (arena, starts, slots)
        mask = capacity - 1
        longest = tokens.map(\.count).max() ?? 0
    }

    deinit {
        arena.deallocate()
        starts.deallocate()
        slots.deallocate()
    }

    /// The bytes of token `id`.
    func bytes(_ id: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: arena + Int(starts[id]), count: Int(starts[id + 1] - starts[id]))
    }

    @inline(__always)
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        let h = fnv1a(bytes)
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The id of a token whose bytes are exactly `bytes`, if any; `hash` is `hash(bytes)`.
    @inline(__always)
    func lookup(_ bytes: UnsafeBufferPointer<UInt8>, hash: Int) -> UInt16? {
        let n = bytes.count
        if n > longest { return nil }
        let prefix = Self.prefix(bytes)
        var h = hash & mask
        while true {
            let slot = slots[h]
            if slot.id < 0 { return nil }
            if Int(slot.length) == n, slot.prefix == prefix,
               n <= 8 || equalBytes(arena + Int(starts[Int(slot.id)]) + 8, bytes.baseAddress! + 8, n - 8) { return UInt16(slot.id) }
            h = (h + 1) & mask
        }
    }

    /// The first 8 bytes (fewer zero-padded) as a little-endian number.
    @inline(__always)
    static func prefix(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<Swift.min(bytes.count, 8) { v |= UInt64(bytes[i]) << UInt64(8 * i) }
        return v
    }
}

/// `encodeValid`'s memo of BPE results (a `TokenizerMemo`'s): piece bytes -> ids, in an open-addressing table over flat
/// storage so that an entry costs no allocation. Entries are found by the piece's `TokenTable.hash` and confirmed
/// by comparing bytes, so colliding hashes only cost probes.
struct PieceCache {
    /// Entries kept at most; once full, the next new piece empties the cache.
    private let limit: Int
    /// Entry index per slot, -1 when empty; a power of two, at least twice the entries (none when `limit` is 0).
    private var slots: [Int32]
    private var hashes: [Int] = []
    /// Entry `e`'s bytes are `keys[keyEnds[e] ..< keyEnds[e + 1]]`, its ids `ids[idEnds[e] ..< idEnds[e + 1]]`.
    private var keyEnds: [Int] = [0]
    private var idEnds: [Int] = [0]
    private var keys: [UInt8] = []
    private var ids: [UInt16] = []

    init(limit: Int) {
        self.limit = limit
        slots = [Int32](repeating: -1, count: limit > 0 ? 1024 : 0)
    }

    /// Appends the ids of `piece` (whose hash is `hash`) to `out` and returns true if it is cached.
    @inline(__always)
    func append(_ piece: UnsafeBufferPointer<UInt8>, hash: Int, to out: inout [UInt16]) -> Bool {
        guard !slots.isEmpty else { return false }
        let mask = slots.count - 1
        var h = hash & mask
        while true {
            let e = Int(slots[h])
            if e < 0 { return false }
            let lo = keyEnds[e]
            if hashes[e] == hash, keyEnds[e + 1] - lo == piece.count,
               keys.withUnsafeBufferPointer({ equalBytes($0.baseAddress! + lo, piece.baseAddress!, piece.count) }) {
                out.append(contentsOf: ids[idEnds[e]..<idEnds[e + 1]])
                return true
            }
            h = (h + 1) & mask
        }
    }

    /// Remembers that `piece` (not cached, hash `hash`) encodes as `pieceIDs`; a full cache is emptied first, so a
    /// cache carried across documents follows the text it meets and stays bounded.
    mutating func insert(_ piece: UnsafeBufferPointer<UInt8>, hash: Int, ids pieceIDs: ArraySlice<UInt16>) {
        guard limit > 0, piece.count <= Self.maxPieceBytes else { return }
        if hashes.count >= limit || keys.count + piece.count > Self.maxKeyBytes { removeAll() }
        if 2 * (hashes.count + 1) > slots.count { rehash(slots: 2 * slots.count) }
        place(hashes.count, hash: hash)
        hashes.append(hash)
        keys.append(contentsOf: piece)
        keyEnds.append(keys.count)
        ids.append(contentsOf: pieceIDs)
        idEnds.append(ids.count)
    }

    /// Piece bytes held at most.
    static let maxKeyBytes = 1 << 20
    /// Longer pieces are not cached: they are rare, and merging them costs little more than a copy per byte.
    static let maxPieceBytes = 256

    /// Slots for `entries` entries: a power of two, at least twice as many.
    static func slotCount(_ entries: Int) -> Int { max(1024, 1 << (Int.bitWidth - (2 * entries - 1).leadingZeroBitCount)) }

    var heldBytes: Int {
        slots.capacity * 4 + (hashes.capacity + keyEnds.capacity + idEnds.capacity) * 8 + keys.capacity + ids.capacity * 2
    }

    private mutating func removeAll() {
        for i in slots.indices { slots[i] = -1 }
        hashes.removeAll(keepingCapacity: true)
        keyEnds.removeAll(keepingCapacity: true); keyEnds.append(0)
        idEnds.removeAll(keepingCapacity: true); idEnds.append(0)
        keys.removeAll(keepingCapacity: true)
        ids.removeAll(keepingCapacity: true)
    }

    private mutating func place(_ entry: Int, hash: Int) {
        let mask = slots.count - 1
        var h = hash & mask
        while slots[h] >= 0 { h = (h + 1) & mask }
        slots[h] = Int32(entry)
    }

    private mutating func rehash(slots count: Int) {
        slots = [Int32](repeating: -1, count: count)
        for (e, hash) in hashes.enumerated() { place(e, hash: hash) }
    }
}
