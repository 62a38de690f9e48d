import ArgumentParser
import Cluster
import Foundation
import Preprocess
import Support

/// `longcrawl bench dedup`: the distributed dedup stage alone, on the ranks mpirun starts.
struct BenchDedup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dedup",
        abstract: "The dedup stage preprocess runs under mpirun, alone, over synthetic candidates with planted copies: its decisions' digest (the same for every rank count), time and peak memory per rank.",
        discussion: """
        Candidates are near dedup's signatures (128 MinHash values, 9 bands of 13), 5% exact copies of an earlier \
        candidate and 15% near copies (one band shared), copies of copies among them. Each rank makes its share only \
        and holds its own candidates, about 9 x N / ranks band keys and the colliding documents. Peak memory is each \
        rank's resident peak over the run, candidates included. LONGCRAWL_MESSAGE_BYTES sets the largest message per \
        pair of ranks (default 64 MiB); the digest does not depend on it.
        Examples:
          longcrawl bench dedup --candidates 1000000
          mpirun -np 4 longcrawl bench dedup --candidates 1000000
        """
    )

    @Option(help: "Synthetic candidates over all ranks.")
    var candidates = 1_000_000

    func run() throws {
        let world = World.shared
        let r = try DedupBenchmark.run(candidates: candidates, world: world)
        guard world.rank == 0 else { return }
        print("dedup: \(r.candidates) candidates on \(r.ranks) rank(s): \(r.dropped) dropped, digest \(r.digest)")
        print(String(format: "time: %.2f s (%.0f candidates/s)", r.seconds, Double(r.candidates) / r.seconds))
        print("peak memory per rank: " + r.peakBytes.map(formatBytes).joined(separator: ", "))
    }
}
