import CLongCrawl
import Glibc

/// Piece bytes -> ids for every piece of 1-15 bytes a tokenizer resolves in one probe (`lc_piece_slot`): seeded with
/// each token of 1-15 bytes (its own id, tiktoken's whole-piece lookup), then added to as pieces of several tokens are
/// merged. One table answers both questions because nine in ten pieces are one token and 99.96% are at most 15
/// bytes. Open addressing with linear probing, at most half full, over raw memory the table owns.
///
/// In front of it, each memo's table keeps `front`: the last pieces of at most 8 bytes and 3 ids found, one per slot
/// of a direct-mapped 256 KiB table (`LC_FRONT_BITS`). Pieces of text are mostly a few thousand common ones, which
/// fit there in L2, while the main table's 8 MiB do not; about 85% of pieces in books are found in front.
///
/// A tokenizer keeps the seeded table (`seed`); each memo works on its own copy, to which it adds at most `pieces`
/// pieces, then empties the slots it added (which leaves exactly the seed: seed entries never move) and goes on.
/// So the memory per thread is fixed (`bytes`).
/// Sendable by hand: the tokenizer's seed is written only in `init` and only read after; a memo's copy is its thread's.
final class PieceTable: @unchecked Sendable {
    let slots: UnsafeMutablePointer<lc_piece_slot>
    static let bits = 18
    static let capacity = 1 << bits
    /// Entries held at most: half the slots, so a probe that misses stops within a few slots.
    static let maxEntries = capacity / 2
    /// Per slot of the front table, two words (`lc_gpt2_encode` says what they hold); empty in a seed.
    let front: UnsafeMutablePointer<UInt64>
    static let frontWords = 2 << LC_FRONT_BITS
    /// The memory a memo's table holds at most: the slots, the front table and the list of added slots.
    static let bytes = capacity * MemoryLayout<lc_piece_slot>.stride + 8 * frontWords + 2 * 4 * maxEntries
    /// The table this one started from (nil for a seed).
    let seed: PieceTable?
    let seedEntries: Int
    /// The slots added to the seed, emptied when there are `pieces` of them.
    private var added: [Int32] = []
    private let pieces: Int

    /// A seed: each token of 1-15 bytes, `tokens[id]` its bytes.
    init(tokens: [[UInt8]]) {
        let slots = Self.allocate()
        slots.initialize(repeating: lc_piece_slot(), count: Self.capacity)
        self.slots = slots
        front = .allocate(capacity: 0)
        seed = nil
        var entries = 0
        for (id, bytes) in tokens.enumerated() where !bytes.isEmpty && bytes.count <= Int(LC_PIECE_MAX_BYTES) {
            var id = UInt16(id)
            if bytes.withUnsafeBufferPointer({ lc_piece_insert(slots, UInt64(Self.capacity - 1), $0.baseAddress, $0.count, &id, 1) }) >= 0 { entries += 1 }
        }
        seedEntries = entries
        pieces = 0
    }

    /// A memo's table: a copy of `seed`, holding at most `pieces` pieces more at a time.
    init(seed: PieceTable, pieces: Int) {
        slots = Self.allocate()
        slots.initialize(from: seed.slots, count: Self.capacity)
        front = .allocate(capacity: Self.frontWords)
        front.initialize(repeating: 0, count: Self.frontWords)
        self.seed = seed
        seedEntries = seed.seedEntries
        self.pieces = min(pieces, Self.maxEntries - seedEntries)
    }

    deinit {
        free(slots)
        front.deallocate()
    }

    /// Room for the slots in huge pages: probes land anywhere in the 8 MiB, which on 4 KiB pages is 2,048 pages,
    /// more than the first-level TLB maps.
    private static func allocate() -> UnsafeMutablePointer<lc_piece_slot> {
        guard let raw = lc_huge_alloc(capacity * MemoryLayout<lc_piece_slot>.stride) else { fatalError("out of memory for the tokenizer's piece table") }
        return raw.bindMemory(to: lc_piece_slot.self, capacity: capacity)
    }

    /// Remembers that `piece` encodes as `ids`, if it fits a slot; when `pieces` are added, they are emptied first.
    func insert(_ piece: UnsafeBufferPointer<UInt8>, ids: UnsafeBufferPointer<UInt16>) {
        guard pieces > 0 else { return }
        if added.count == pieces {
            for s in added { slots[Int(s)] = lc_piece_slot() }
            added.removeAll(keepingCapacity: true)
        }
        let s = lc_piece_insert(slots, UInt64(Self.capacity - 1), piece.baseAddress, piece.count, ids.baseAddress, ids.count)
        if s >= 0 { added.append(Int32(s)) }
    }
}
