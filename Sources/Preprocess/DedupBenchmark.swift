import Cluster
import Foundation
import Support

/// `bench dedup`: the distributed dedup stage alone (`DedupPlan`, the code `preprocess` runs under mpirun) over
/// synthetic candidates, on however many ranks mpirun starts. Candidate i is made from its number alone, so each
/// rank makes just its share (parts of 1,000 candidates, part p on rank p mod ranks, as input parts are shared):
/// a fresh signature of near dedup's default settings, or, 5% of the time, an exact copy of an earlier candidate,
/// or, 15%, a near copy (one band kept, the others drawn anew), whose parent may itself be a copy: chains, where a
/// copy of a dropped copy shares no band with the kept original and is kept.
public enum DedupBenchmark {
    public struct Report: Sendable {
        public var candidates: Int, ranks: Int, dropped: Int
        /// SHA-256 of the `duplicates.jsonl` the plan gives (on rank 0): the same for every rank count.
        public var digest: String
        public var seconds: Double
        /// Each rank's peak resident memory over the stage, its candidates included, in bytes.
        public var peakBytes: [Int]
    }

    static let partSize = 1000
    static let settings = DedupSettings(mode: .near)

    public static func run(candidates: Int, world: World) throws -> Report {
        guard candidates >= 1 else { throw LongCrawlError("--candidates must be positive, got \(candidates)") }
        ResidentMemory.resetPeak()
        let started = Date()
        var mine: [DedupPlan.Candidate] = []
        for part in stride(from: world.rank, to: (candidates + partSize - 1) / partSize, by: world.size) {
            for i in (part * partSize)..<min((part + 1) * partSize, candidates) {
                mine.append(.init(part: part, ordinal: i, id: "doc-\(i)", fingerprint: signature(i)))
            }
        }
        let lines = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-dedup-\(getpid()).jsonl")
        defer { try? FileManager.default.removeItem(at: lines) }
        let plan = try DedupPlan(settings: settings, mine: mine, world: world, duplicates: world.rank == 0 ? lines : nil)
        let dropped = world.sum([Double(plan.drops.count)])[0]
        let peaks = world.allToAll([[Int]](repeating: [ResidentMemory.peak], count: world.size)).values
        return Report(candidates: candidates, ranks: world.size, dropped: Int(dropped), digest: world.rank == 0 ? try sha256(of: lines).hex : "",
                      seconds: Date().timeIntervalSince(started), peakBytes: peaks)
    }

    /// Candidate i's signature (see the type's comment).
    static func signature(_ i: Int) -> [UInt64] {
        var rng = SplitMix64(seed: SplitMix64.mix(UInt64(i) ^ 0x4445_4455_5045))
        let (bands, rows) = settings.layout, kind = rng.next(below: 100)
        if i > 0, kind < 20 {
            var s = signature(Int(rng.next(below: UInt64(i))))
            guard kind >= 5 else { return s }
            let keep = Int(rng.next(below: UInt64(bands)))
            for b in 0..<bands where b != keep { for w in (b * rows)..<((b + 1) * rows) { s[w] = rng.next(below: MinHash.prime) } }
            return s
        }
        return (0..<settings.hashes).map { _ in rng.next(below: MinHash.prime) }
    }
}
