import Cluster
import Foundation
import Support

/// Dedup across the ranks of a distributed run, decided before any rank writes: exactly the single run's decisions
/// (`Deduplicator`: the first document in input order is kept; a later one is dropped when one of its bands equals
/// that band of a kept one, and the earliest such kept one is named), with no rank holding every signature or key.
/// 1. Keys, a band at a time: each rank sends the band's key of each of its candidates, with the candidate's place in
///    input order, to the rank that owns the key (key mod ranks), so a rank holds about N / ranks keys at once.
/// 2. Collisions: each owner sorts the band's keys into buckets and keeps the buckets of two or more documents,
///    numbered over all bands and ranks.
/// 3. Replay: every rank receives every collision's members (16 bytes each) and replays the single run over them in
///    input order: a document is dropped when one of its buckets has a kept member (naming the earliest), else kept,
///    marking its buckets. A document in no collision is kept by both; so the replay decides what the single run
///    decides, on every rank alike.
/// 4. Jaccard: the rank of each named kept document sends its id and signature to the ranks whose documents it
///    drops, a batch of decisions at a time; each rank keeps its own drops; rank 0 writes the lines in order.
/// A rank holds its own candidates' signatures, its share of one band's keys, the collisions' members (documents that
/// share a band with another: a fraction of the candidates) and the decisions (16 bytes a duplicate). Every exchange is a
/// `World.allToAll` in bounded rounds.
struct DedupPlan {
    struct Candidate {
        var part: Int, ordinal: Int, id: String, fingerprint: [UInt64]

        /// Place in input order over all ranks: the part (each belongs to one rank), then the rank's record number.
        func order() throws -> UInt64 {
            guard part < 1 << 28, ordinal < 1 << 36 else {
                throw LongCrawlError("dedup: input part \(part) or record \(ordinal) past the plan's 2^28 parts and 2^36 records a rank")
            }
            return UInt64(part) << 36 | UInt64(ordinal)
        }
    }

    private struct Key { var key: UInt64, order: UInt64 }
    private struct Member { var order: UInt64, bucket: UInt64 }

    /// This rank's duplicates by ordinal.
    private(set) var drops: [Int: (kept: String, jaccard: Double)] = [:]

    /// Decides over `world` with each rank's own candidates (`mine`, in input order); rank 0 writes every rank's
    /// `duplicates.jsonl` lines, in input order, to `duplicates` (the other ranks pass nil).
    init(settings: DedupSettings, mine: [Candidate], world: World, duplicates: URL?) throws {
        let ranks = world.size
        func owner(_ order: UInt64) -> Int { Int(order >> 36) % ranks }
        let orders = try mine.map { try $0.order() }
        guard zip(orders, orders.dropFirst()).allSatisfy({ $0 < $1 }) else { throw LongCrawlError("dedup: candidates out of input order") }

        // 1-2. Band by band (a band's keys at a time in memory): each key to its owner, which numbers its buckets of
        // two or more documents.
        var members: [Member] = [], buckets: UInt64 = 0
        for band in 0..<settings.layout.bands {
            var outgoing = [[Key]](repeating: [], count: ranks)
            for (c, order) in zip(mine, orders) {
                let key = settings.bandKey(c.fingerprint, band: band)
                outgoing[Int(key % UInt64(ranks))].append(Key(key: key, order: order))
            }
            var keys = world.allToAll(outgoing).values
            outgoing = []
            keys.sort { ($0.key, $0.order) < ($1.key, $1.order) }
            var i = 0
            while i < keys.count {
                var j = i + 1
                while j < keys.count, keys[j].key == keys[i].key { j += 1 }
                if j - i >= 2 {
                    for k in i..<j { members.append(Member(order: keys[k].order, bucket: buckets)) }
                    buckets += 1
                }
                i = j
            }
        }
        // Numbered after the lower ranks' buckets.
        let counts = world.allToAll([[UInt64]](repeating: [buckets], count: ranks)).values
        let first = counts[..<world.rank].reduce(0, +)
        for k in members.indices { members[k].bucket += first }

        // 3. The single run replayed over the collisions, in input order.
        var all = world.allToAll([[Member]](repeating: members, count: ranks)).values
        members = []
        all.sort { ($0.order, $0.bucket) < ($1.order, $1.bucket) }
        var firstKept = [UInt64](repeating: .max, count: Int(counts.reduce(0, +)))
        var decisions: [(dropped: UInt64, kept: UInt64)] = []
        var i = 0
        while i < all.count {
            var j = i, hit = UInt64.max
            while j < all.count, all[j].order == all[i].order { hit = min(hit, firstKept[Int(all[j].bucket)]); j += 1 }
            if hit != .max {
                decisions.append((all[i].order, hit))
            } else {
                for k in i..<j where firstKept[Int(all[k].bucket)] == .max { firstKept[Int(all[k].bucket)] = all[i].order }
            }
            i = j
        }
        all = []; firstKept = []

        // 4. In batches of decisions (the same on every rank, so each holds at most a batch's signatures): each named
        // kept document's id and signature to the ranks of the documents it drops; their lines to rank 0, which
        // appends them to `duplicates` in input order.
        func local(_ order: UInt64) -> Candidate {
            var lo = 0, hi = orders.count
            while lo < hi { let mid = (lo + hi) / 2; if orders[mid] < order { lo = mid + 1 } else { hi = mid } }
            return mine[lo]
        }
        let file = try duplicates.map { url -> FileHandle in
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else { throw FileError(url, "cannot create") }
            return try FileHandle(forWritingTo: url)
        }
        defer { try? file?.close() }
        for start in stride(from: 0, to: decisions.count, by: Self.batch) {
            let batch = decisions[start..<min(start + Self.batch, decisions.count)]
            var sent = [Set<UInt64>](repeating: [], count: ranks), kept = [[UInt8]](repeating: [], count: ranks)
            for d in batch where owner(d.kept) == world.rank && sent[owner(d.dropped)].insert(d.kept).inserted {
                let c = local(d.kept)
                kept[owner(d.dropped)].append(order: d.kept, id: c.id, words: c.fingerprint)
            }
            var named: [UInt64: (id: String, fingerprint: [UInt64])] = [:]
            var reader = Reader(bytes: world.allToAll(kept).values)
            while let (order, id, words) = reader.next() { named[order] = (id, words) }
            var toRoot = [[UInt8]](repeating: [], count: ranks)
            for d in batch where owner(d.dropped) == world.rank {
                let c = local(d.dropped), k = named[d.kept]!
                let jaccard = MinHash.jaccard(k.fingerprint, c.fingerprint)
                drops[c.ordinal] = (k.id, jaccard)
                toRoot[0].append(order: d.dropped, id: String(decoding: duplicateLine(kept: k.id, dropped: c.id, jaccard: jaccard), as: UTF8.self), words: [])
            }
            var lines: [(order: UInt64, line: String)] = []
            reader = Reader(bytes: world.allToAll(toRoot).values)
            while let (order, line, _) = reader.next() { lines.append((order, line)) }
            try file?.write(contentsOf: lines.sorted { $0.order < $1.order }.flatMap { Array($0.line.utf8) })
        }
        try file?.synchronize()
    }

    /// Decisions a round of step 4 settles: a rank holds at most this many received signatures.
    static let batch = 1 << 14

    /// Reads what `append(order:id:words:)` wrote: an order, a string, and 64-bit words, little-endian.
    private struct Reader {
        let bytes: [UInt8]
        var at = 0

        mutating func next() -> (UInt64, String, [UInt64])? {
            guard at < bytes.count else { return nil }
            let order = word(), idBytes = Int(word())
            let id = String(decoding: bytes[at..<at + idBytes], as: UTF8.self)
            at += idBytes
            let count = Int(word())
            return (order, id, (0..<count).map { _ in word() })
        }

        private mutating func word() -> UInt64 {
            defer { at += 8 }
            return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt64.self) }
        }
    }
}

private extension [UInt8] {
    mutating func append(order: UInt64, id: String, words: [UInt64]) {
        func word(_ v: UInt64) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
        word(order); word(UInt64(id.utf8.count)); append(contentsOf: id.utf8); word(UInt64(words.count))
        for w in words { word(w) }
    }
}

extension Preprocessor {
    /// The first pass of a distributed dedup: this share's documents that reach dedup, with their fingerprints,
    /// numbered as `run` numbers them; every record's outcome goes to `scratch`, for `run` to replay.
    func dedupCandidates(scratch: ScratchWriter) throws -> [DedupPlan.Candidate] {
        let reader = try options.reader(inputs, share: share)
        let source = FeedOutcomes(reader: reader, stage: options.stage, workers: options.workers, restart: 0,
                                  tokenizing: tokenizing(from: 0, dedup: options.dedup))
        defer { source.stop() }
        var out: [DedupPlan.Candidate] = [], tokens = 0
        progress?.begin(totalBytes: reader.totalBytes)
        while let piece = source.next() {
            for case .document(let d) in piece.records where !d.fingerprint.isEmpty {
                out.append(.init(part: d.part, ordinal: d.ordinal, id: d.id, fingerprint: d.fingerprint))
                tokens += min(d.tokens.count / windowLength, options.windowsPerDocument ?? .max) * windowLength
            }
            try scratch.append(piece, windowsPerDocument: options.windowsPerDocument)
            progress?.update(bytes: piece.progressBytes, documents: source.records, kept: out.count, tokens: tokens)
        }
        progress?.end()
        return out
    }
}
