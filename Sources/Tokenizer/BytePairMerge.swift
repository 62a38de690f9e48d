/// tiktoken's merge rule, in token ids.
///
/// tiktoken (`byte_pair_encode`) starts a piece from its single bytes and, while some adjacent pair of parts joins
/// into the bytes of a token, joins the pair whose joined token has the lowest rank (= id), leftmost on ties. Every
/// part is therefore a token from start to end, so "the bytes of parts a and b, joined, are token t" is a relation
/// on ids alone: `PairTable` holds it for every pair of tokens whose concatenation is a token (108,299 pairs for
/// GPT-2, against vocab.bpe's 50,000 merges; built from the vocabulary, not from vocab.bpe, so it is tiktoken's rule
/// and not pair-merge BPE). Merging over ids then gives tiktoken's ids by construction, without hashing bytes.
///
/// Three schedules of the same rule, by piece length:
/// - under `heapFrom` bytes, tiktoken's own: a scan for the lowest pair, a join, the two neighbours' pairs
///   recomputed. Quadratic, but with the smallest constants for the short pieces text is made of.
/// - up to `bucketsFrom`, a binary heap of (rank, position) over a linked list of parts: pop the lowest, skip it if
///   that pair no longer exists (lazy deletion), join, push the two new neighbour pairs. O(n log n).
/// - longer pieces (a run of one letter, digits or emoji, inline data): `mergeByBuckets`, the heap's order from a
///   bucket per rank, linear in practice (a sort per bucket when its positions arrive out of order, which the
///   pathological inputs never cause), with memory proportional to the piece and freed after it.
/// Each takes the same pair at each step, so they agree (MergeScheduleTests). The heap's minimum is the scan's
/// choice: the key orders by rank, then position, and a stale entry can only name a pair that is gone or a
/// duplicate of a live one (a join never recreates its own rank: the joined token with either neighbour is
/// longer than it).
/// Sendable by hand: its tables are written only in `init` and only read after.
final class PairTable: @unchecked Sendable {
    /// For every two bytes `a b`: the id of the token `[a, b]`, or `none`. The first round of every merge reads
    /// only this 128 KiB grid.
    private let grid: UnsafeMutablePointer<UInt16>
    /// Open addressing over `key << 16 | joined id`, with key = `a << 16 | b`; `empty` when free.
    private let slots: UnsafeMutablePointer<UInt64>
    private let shift: UInt64
    /// The id of each single byte's token.
    let byteIDs: [UInt16]
    /// No token: larger than every id, so a scan for the lowest rank never picks it.
    static let none = UInt16.max
    private static let empty = UInt64.max
    static let heapFrom = 64
    static let bucketsFrom = 8192

    /// `tokens[id]`: each id's bytes; `id(of:)` finds a byte string's id.
    init(tokens: [[UInt8]], id: (UnsafeBufferPointer<UInt8>) -> UInt16?) {
        var byteIDs = [UInt16](repeating: 0, count: 256)
        for (t, bytes) in tokens.enumerated() where bytes.count == 1 { byteIDs[Int(bytes[0])] = UInt16(t) }
        var pairs: [(UInt64, UInt16)] = []
        for (t, bytes) in tokens.enumerated() where bytes.count >= 2 {
            bytes.withUnsafeBufferPointer { b in
                for k in 1..<b.count {
                    if let x = id(UnsafeBufferPointer(rebasing: b[..<k])), let y = id(UnsafeBufferPointer(rebasing: b[k...])) {
                        pairs.append((UInt64(x) << 16 | UInt64(y), UInt16(t)))
                    }
                }
            }
        }
        grid = .allocate(capacity: 1 << 16)
        grid.initialize(repeating: Self.none, count: 1 << 16)
        var bits = 1
        while 1 << bits < 2 * pairs.count { bits += 1 }
        let capacity = 1 << bits
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Self.empty, count: capacity)
        shift = UInt64(64 - bits)
        for (key, t) in pairs {
            var h = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
            while slots[h] != Self.empty { h = (h + 1) & (capacity - 1) }
            slots[h] = key << 16 | UInt64(t)
        }
        self.byteIDs = byteIDs
        for a in 0..<256 { for b in 0..<256 { grid[a << 8 | b] = joined(byteIDs[a], byteIDs[b]) } }
    }

    deinit {
        grid.deallocate()
        slots.deallocate()
    }

    /// The id of the token spelled by token `a` then token `b`, or `none`.
    @inline(__always)
    func joined(_ a: UInt16, _ b: UInt16) -> UInt16 {
        let key = UInt64(a) << 16 | UInt64(b)
        let mask = (1 << (64 - Int(shift))) - 1
        var h = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
        while true {
            let s = slots[h]
            if s == Self.empty { return Self.none }
            if s >> 16 == key { return UInt16(truncatingIfNeeded: s) }
            h = (h + 1) & mask
        }
    }

    /// Appends the ids of `piece` (at least one byte) to `out`.
    func merge(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [UInt16]) {
        if piece.count >= Self.bucketsFrom { mergeByBuckets(piece, into: &out) }
        else if piece.count >= Self.heapFrom { mergeLong(piece, into: &out) }
        else { mergeShort(piece, into: &out) }
    }

    func mergeShort(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [UInt16]) {
        let n = piece.count
        let p = piece.baseAddress!
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: 2 * n) { buffer in
            // parts[i]: the i-th part's id; ranks[i]: the token joining parts i and i + 1, or none.
            let parts = buffer.baseAddress!, ranks = parts + n
            for i in 0..<n { parts[i] = byteIDs[Int(p[i])] }
            for i in 0..<(n - 1) { ranks[i] = grid[Int(p[i]) << 8 | Int(p[i + 1])] }
            var m = n
            while m > 1 {
                var best = Self.none, at = 0
                for i in 0..<(m - 1) where ranks[i] < best { best = ranks[i]; at = i }
                if best == Self.none { break }
                parts[at] = best
                var i = at + 1
                while i < m - 1 { parts[i] = parts[i + 1]; ranks[i] = ranks[i + 1]; i += 1 }
                m -= 1
                if at + 1 < m { ranks[at] = joined(best, parts[at + 1]) }
                if at > 0 { ranks[at - 1] = joined(parts[at - 1], best) }
            }
            out.append(contentsOf: UnsafeBufferPointer(start: parts, count: m))
        }
    }

    func mergeLong(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [UInt16]) {
        let n = piece.count
        let p = piece.baseAddress!
        // Part k starts at byte k while it lives; next/previous link the live parts; rank[k] is the token joining
        // part k and the next, or none (also once part k is joined into the part before it).
        let part = UnsafeMutablePointer<UInt16>.allocate(capacity: n), rank = UnsafeMutablePointer<UInt16>.allocate(capacity: n)
        let next = UnsafeMutablePointer<Int32>.allocate(capacity: n), previous = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        // Each join pushes at most two entries: 3n bounds the heap.
        let heap = UnsafeMutablePointer<UInt64>.allocate(capacity: 3 * n)
        defer { part.deallocate(); rank.deallocate(); next.deallocate(); previous.deallocate(); heap.deallocate() }
        var count = 0
        for k in 0..<n {
            part[k] = byteIDs[Int(p[k])]
            next[k] = Int32(k + 1)
            previous[k] = Int32(k - 1)
            rank[k] = k + 1 < n ? grid[Int(p[k]) << 8 | Int(p[k + 1])] : Self.none
            if rank[k] != Self.none { heap[count] = UInt64(rank[k]) << 32 | UInt64(k); count += 1 }
        }
        // Heapify: keys order by rank, then position, so the minimum is tiktoken's choice.
        func siftDown(_ start: Int) {
            var i = start
            let key = heap[i]
            while true {
                var c = 2 * i + 1
                if c >= count { break }
                if c + 1 < count, heap[c + 1] < heap[c] { c += 1 }
                if heap[c] >= key { break }
                heap[i] = heap[c]
                i = c
            }
            heap[i] = key
        }
        func push(_ key: UInt64) {
            var i = count
            count += 1
            while i > 0 {
                let parent = (i - 1) / 2
                if heap[parent] <= key { break }
                heap[i] = heap[parent]
                i = parent
            }
            heap[i] = key
        }
        var i = count / 2
        while i > 0 { i -= 1; siftDown(i) }
        while count > 0 {
            let top = heap[0]
            count -= 1
            if count > 0 { heap[0] = heap[count]; siftDown(0) }
            let k = Int(truncatingIfNeeded: top & 0xFFFF_FFFF), r = UInt16(truncatingIfNeeded: top >> 32)
            if rank[k] != r { continue }
            let gone = Int(next[k])
            part[k] = r
            rank[gone] = Self.none
            let after = Int(next[gone])
            next[k] = Int32(after)
            if after < n {
                previous[after] = Int32(k)
                rank[k] = joined(r, part[after])
                if rank[k] != Self.none { push(UInt64(rank[k]) << 32 | UInt64(k)) }
            } else {
                rank[k] = Self.none
            }
            let before = Int(previous[k])
            if before >= 0 {
                rank[before] = joined(part[before], r)
                if rank[before] != Self.none { push(UInt64(rank[before]) << 32 | UInt64(before)) }
            }
        }
        var k = 0
        while k < n { out.append(part[k]); k = Int(next[k]) }
    }

    /// A part of a long piece while it merges: its token, the token joining it with the next part (or none), and the
    /// links to its neighbours (-1 / n at the ends). One struct, so a join touches a cache line per part, not four.
    private struct Part {
        var next: Int32, previous: Int32
        var id: UInt16, rank: UInt16
    }

    /// The heap's order without its log factor, for pieces of thousands of bytes: pairs wait in a bucket per rank,
    /// and the buckets are worked through in rank order, each in position order (sorted once when reached, the
    /// positions of one bucket nearly always arriving in order already). A join can create a pair ranked at or
    /// below the bucket in hand (a token whose id is lower than a token it contains); such pairs go to a small heap
    /// that is served first, so each step still takes the lowest (rank, position). Entries whose pair has changed
    /// since are skipped, as in the heap. Buckets are chains of 64-byte blocks, so reading one back streams memory.
    func mergeByBuckets(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [UInt16]) {
        let n = piece.count
        let p = piece.baseAddress!
        let parts = UnsafeMutablePointer<Part>.allocate(capacity: n)
        let buckets = Int(Self.none)
        // Per bucket: its first and last block (-1: empty), and how many positions the last one holds.
        let first = UnsafeMutablePointer<Int32>.allocate(capacity: buckets), last = UnsafeMutablePointer<Int32>.allocate(capacity: buckets)
        let filled = UnsafeMutablePointer<UInt8>.allocate(capacity: buckets)
        // Block b is blocks[16 b ..< 16 b + 16]: the next block's index (-1: none), then up to 15 positions.
        var blockCapacity = n / 8 + 1024
        var blocks = UnsafeMutablePointer<Int32>.allocate(capacity: 16 * blockCapacity)
        defer { parts.deallocate(); first.deallocate(); last.deallocate(); filled.deallocate(); blocks.deallocate() }
        first.initialize(repeating: -1, count: buckets)
        var blockCount = 0
        var low: [UInt64] = []
        var cursor = -1
        @inline(__always) func add(_ k: Int, _ r: UInt16) {
            if Int(r) <= cursor {
                var i = low.count
                let key = UInt64(r) << 32 | UInt64(k)
                low.append(key)
                while i > 0, low[(i - 1) / 2] > key { low[i] = low[(i - 1) / 2]; i = (i - 1) / 2 }
                low[i] = key
                return
            }
            let r = Int(r)
            if first[r] < 0 || filled[r] == 15 {
                if blockCount == blockCapacity {
                    let grown = UnsafeMutablePointer<Int32>.allocate(capacity: 32 * blockCapacity)
                    grown.update(from: blocks, count: 16 * blockCapacity)
                    blocks.deallocate()
                    (blocks, blockCapacity) = (grown, 2 * blockCapacity)
                }
                blocks[16 * blockCount] = -1
                if first[r] < 0 { first[r] = Int32(blockCount) } else { blocks[16 * Int(last[r])] = Int32(blockCount) }
                last[r] = Int32(blockCount)
                filled[r] = 0
                blockCount += 1
            }
            blocks[16 * Int(last[r]) + 1 + Int(filled[r])] = Int32(k)
            filled[r] += 1
        }
        func popLow() {
            let end = low.removeLast()
            guard !low.isEmpty else { return }
            var i = 0
            while true {
                var c = 2 * i + 1
                if c >= low.count { break }
                if c + 1 < low.count, low[c + 1] < low[c] { c += 1 }
                if low[c] >= end { break }
                low[i] = low[c]
                i = c
            }
            low[i] = end
        }
        for k in 0..<n {
            let r = k + 1 < n ? grid[Int(p[k]) << 8 | Int(p[k + 1])] : Self.none
            parts[k] = Part(next: Int32(k + 1), previous: Int32(k - 1), id: byteIDs[Int(p[k])], rank: r)
            if r != Self.none { add(k, r) }
        }
        var current: [Int32] = [], at = 0
        while true {
            let c = UInt16(truncatingIfNeeded: cursor)
            while at < current.count, parts[Int(current[at])].rank != c { at += 1 }
            let k: Int, r: UInt16
            if let top = low.first, at == current.count || top < UInt64(cursor) << 32 | UInt64(current[at]) {
                popLow()
                (k, r) = (Int(truncatingIfNeeded: top & 0xFFFF_FFFF), UInt16(truncatingIfNeeded: top >> 32))
                if parts[k].rank != r { continue }
            } else if at < current.count {
                (k, r) = (Int(current[at]), c)
                at += 1
            } else {
                cursor += 1
                while cursor < buckets, first[cursor] < 0 { cursor += 1 }
                if cursor == buckets { break }
                current.removeAll(keepingCapacity: true)
                var b = Int(first[cursor])
                while b >= 0 {
                    let count = Int(blocks[16 * b]) < 0 ? Int(filled[cursor]) : 15
                    current.append(contentsOf: UnsafeBufferPointer(start: blocks + 16 * b + 1, count: count))
                    b = Int(blocks[16 * b])
                }
                if zip(current, current.dropFirst()).contains(where: { $0 > $1 }) { current.sort() }
                at = 0
                continue
            }
            let gone = Int(parts[k].next)
            let after = Int(parts[gone].next)
            parts[gone].rank = Self.none
            parts[k].id = r
            parts[k].next = Int32(after)
            parts[k].rank = Self.none
            if after < n {
                parts[after].previous = Int32(k)
                let joined = joined(r, parts[after].id)
                parts[k].rank = joined
                if joined != Self.none { add(k, joined) }
            }
            let before = Int(parts[k].previous)
            if before >= 0 {
                let joined = joined(parts[before].id, r)
                parts[before].rank = joined
                if joined != Self.none { add(before, joined) }
            }
        }
        var k = 0
        while k < n { out.append(parts[k].id); k = Int(parts[k].next) }
    }
}
