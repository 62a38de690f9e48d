import Cluster
import Foundation
import Support

/// Global dedup for a distributed run, decided before any rank writes: each rank reads its parts once through the
/// document stage and the tokenizer and lists its candidates (documents with a window's tokens) with their
/// fingerprints; the ranks exchange them; every rank runs the same `Deduplicator` over all candidates in input
/// order (part, then record), which is what a single run decides; each keeps the drops of its own parts. The
/// writing pass then drops exactly those. The price: the rank's parts are read, filtered and tokenized twice.
struct DedupPlan {
    struct Candidate {
        var part: Int, ordinal: Int, id: String, fingerprint: [UInt64]
    }

    /// This rank's duplicates by its ordinal, and every rank's duplicates as `duplicates.jsonl` lines, in input order.
    var drops: [Int: (kept: String, jaccard: Double)] = [:]
    var lines: [UInt8] = []

    init(settings: DedupSettings, mine: [Candidate], world: World) {
        let all = world.allGather(Self.encode(mine)).flatMap(Self.decode).sorted { ($0.part, $0.ordinal) < ($1.part, $1.ordinal) }
        let dedup = Deduplicator(settings)
        for c in all {
            guard let hit = dedup.check(id: c.id, fingerprint: c.fingerprint) else { continue }
            lines += duplicateLine(kept: hit.kept, dropped: c.id, jaccard: hit.jaccard)
            if c.part % world.size == world.rank { drops[c.ordinal] = hit }
        }
    }

    private static func encode(_ candidates: [Candidate]) -> Data {
        var out: [UInt8] = []
        func int(_ v: Int) { for k in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
        for c in candidates {
            int(c.part); int(c.ordinal); int(c.id.utf8.count); out += c.id.utf8; int(c.fingerprint.count)
            for w in c.fingerprint { int(Int(bitPattern: UInt(w))) }
        }
        return Data(out)
    }

    private static func decode(_ data: Data) -> [Candidate] {
        let bytes = [UInt8](data)
        var at = 0, out: [Candidate] = []
        func int() -> Int { defer { at += 8 }; return (0..<8).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        while at < bytes.count {
            let part = int(), ordinal = int(), idBytes = int()
            let id = String(decoding: bytes[at..<at + idBytes], as: UTF8.self)
            at += idBytes
            let words = int()
            out.append(Candidate(part: part, ordinal: ordinal, id: id, fingerprint: (0..<words).map { _ in UInt64(bitPattern: Int64(int())) }))
        }
        return out
    }
}

extension Preprocessor {
    /// The first pass of a distributed dedup: this share's documents that reach dedup, with their fingerprints,
    /// numbered as `run` numbers them.
    func dedupCandidates() throws -> [DedupPlan.Candidate] {
        let stage = options.stage
        let reader = try options.reader(inputs, share: share)
        let feed = DocumentFeed(reader: reader, stage: stage, tokenizing: tokenizing(from: 0, dedup: options.dedup), workers: options.workers)
        defer { feed.stop() }
        var ordinal = 0, out: [DedupPlan.Candidate] = []
        while let piece = feed.next() {
            for (r, f) in zip(piece.records, piece.fingerprints) {
                defer { ordinal += 1 }
                if !f.isEmpty, case .document(let d) = r { out.append(.init(part: d.part, ordinal: ordinal, id: d.id, fingerprint: f)) }
            }
        }
        return out
    }
}
