import CLongCrawl
import Dispatch
import Foundation
import Support

/// The GPT-2 byte-level BPE tokenizer, giving the same ids as tiktoken's `gpt2` encoding (`encode_ordinary`).
///
/// Text is split by the GPT-2 pattern (see `CharClass` for the scanner's states); each piece that is a whole token
/// maps directly, the others are merged tiktoken's way: start from single bytes and repeatedly merge the adjacent
/// pair whose joined bytes have the lowest rank, leftmost first. A token's rank is its id (see `PairTable` for how
/// merging runs in ids, and in linear time on long pieces).
///
/// What a piece costs: one probe of the memo's `PieceTable` for a piece of at most 15 bytes (all tokens of that
/// length, and the pieces of several tokens met before); a longer piece, the token table (`TokenTable`, as
/// tiktoken's whole-piece lookup) then the memo's `PieceCache`; a merge for a piece met for the first time. Both
/// memo tables have a fixed size (`TokenizerMemo.maxHeldBytes`), so memory does not grow with the text.
public final class GPT2Tokenizer: Sendable {
    private let table: TokenTable
    let pairs: PairTable
    /// Every token of 1-15 bytes: each memo's piece table starts as a copy.
    private let seed: PieceTable

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
        seed = PieceTable(tokens: tokens)
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
    /// The loop over pieces is `lc_gpt2_encode` (Sources/CLongCrawl/gpt2.c): it splits the text and looks each piece
    /// of at most 15 bytes up in the memo's `PieceTable`, which holds every such token and the pieces merged so far
    /// (behind a small front table of the pieces found lately), so nearly every piece costs one probe. The others
    /// come back here (`Miss.resolve`): a longer piece is looked up in the token table and the memo's `PieceCache`;
    /// a piece found in neither is merged and remembered.
    func encodeValid(_ text: UnsafeBufferPointer<UInt8>, memo: inout TokenizerMemo) -> [UInt16] {
        guard let base = text.baseAddress, !text.isEmpty else { return [] }
        let table = memo.table(seed: seed)
        // A token is at least one byte; 8 more for the kernel's 16-byte stores.
        let out = UnsafeMutablePointer<UInt16>.allocate(capacity: text.count + 8)
        defer { out.deallocate() }
        let count = withUnsafeMutablePointer(to: &memo) { memo in
            var miss = Miss(tokenizer: self, table: table, memo: memo, text: base)
            return withUnsafeMutablePointer(to: &miss) { context in
                lc_gpt2_encode(base, text.count, table.slots, UInt64(PieceTable.capacity - 1), table.front, characterClasses, out,
                               { miss, start, end, out in miss!.assumingMemoryBound(to: Miss.self).pointee.resolve(start, end, out!) }, context)
            }
        }
        return Array(UnsafeBufferPointer(start: out, count: count))
    }

    /// What `lc_gpt2_encode` calls back with the pieces its table lacks.
    private struct Miss {
        let tokenizer: GPT2Tokenizer
        let table: PieceTable
        let memo: UnsafeMutablePointer<TokenizerMemo>
        let text: UnsafePointer<UInt8>
        var ids: [UInt16] = []

        /// Writes the ids of `text[start ..< end]` at `out` and returns how many. A piece that fits a slot of the
        /// table and is not there is no token (the table holds them all) and was never merged; the others (longer,
        /// or of more ids than a slot holds, such as a few CJK characters) are looked up in the token table and the
        /// piece cache. A merged piece is remembered in the table if it fits, else in the cache.
        mutating func resolve(_ start: Int, _ end: Int, _ out: UnsafeMutablePointer<UInt16>) -> Int {
            let piece = UnsafeBufferPointer(start: text + start, count: end - start)
            ids.removeAll(keepingCapacity: true)
            let hash = TokenTable.hash(piece)
            if piece.count > Int(LC_PIECE_MAX_BYTES), let id = tokenizer.table.lookup(piece, hash: hash) { ids.append(id) }
            else if !memo.pointee.cache.append(piece, hash: hash, to: &ids) {
                tokenizer.pairs.merge(piece, into: &ids)
                if piece.count <= Int(LC_PIECE_MAX_BYTES), ids.count <= Int(LC_PIECE_MAX_IDS) {
                    ids.withUnsafeBufferPointer { table.insert(piece, ids: $0) }
                } else {
                    memo.pointee.cache.insert(piece, hash: hash, ids: ids[...])
                }
            }
            ids.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: $0.count) }
            return ids.count
        }
    }
}

/// What `encode(bytes:memo:)` keeps between calls on one thread: the ids of the pieces met so far. Pieces of at
/// most 15 bytes and 7 ids go into a copy of the tokenizer's `PieceTable` (8 MiB), which starts over from the
/// vocabulary when full; the others into a `PieceCache` (at most 65,536 pieces of at most 256 bytes, 1 MiB of their
/// bytes).
public struct TokenizerMemo {
    var cache: PieceCache
    private var table: PieceTable?
    /// Pieces the table takes before it starts over.
    private let pieces: Int

    public init() { self.init(limit: PieceTable.maxEntries) }
    /// A memo that holds at most `limit` merged pieces in each of its tables (tests shrink it).
    init(limit: Int) {
        cache = PieceCache(limit: min(limit, 65_536))
        pieces = limit
    }

    /// The memo's piece table, a private copy of `seed` (made on first use, or when this memo was copied or last
    /// used with another tokenizer).
    mutating func table(seed: PieceTable) -> PieceTable {
        if isKnownUniquelyReferenced(&table), let t = table, t.seed === seed { return t }
        let t = PieceTable(seed: seed, pieces: pieces)
        table = t
        return t
    }

    /// Bytes of memory the memo holds.
    var heldBytes: Int { cache.heldBytes + (table == nil ? 0 : PieceTable.bytes) }
    /// The most `heldBytes` can be, whatever the text: each array of the piece cache at most twice its capped count.
    static let maxHeldBytes = 2 * (PieceCache.slotCount(65_536) * 4 + 3 * 8 * 65_537 + 3 * PieceCache.maxKeyBytes) + PieceTable.bytes
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
/// U+10FFFF are invalid), or nil when all of `bytes` is valid UTF-8. ASCII runs are checked 32 bytes at a time (the
/// tokenizer's first pass over every text, so it must cost little next to tokenizing).
public func firstInvalidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
    guard let base = bytes.baseAddress else { return nil }
    var i = 0
    let n = bytes.count
    let high: UInt64 = 0x8080_8080_8080_8080
    while i < n {
        while i + 32 <= n {
            let p = UnsafeRawPointer(base + i)
            if (p.loadUnaligned(as: UInt64.self) | p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                | p.loadUnaligned(fromByteOffset: 16, as: UInt64.self) | p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)) & high != 0 { break }
            i += 32
        }
        while i + 8 <= n, UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self) & high == 0 { i += 8 }
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
