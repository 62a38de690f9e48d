import ArgumentParser
import Foundation
import Shards

/// `longcrawl verify DIR`: every checksum and shape; exit status 1 naming each bad shard.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every shard of a dataset: SHA-256, size, every window's checksum, shapes and attributes.",
        discussion: """
        Prints one line per fault (file: what is wrong) and exits with status 1 if there is any.

        Example:
          longcrawl verify out/sample
        """
    )

    @Argument(help: "Dataset folder (holding index.json).")
    var dataset: String

    func run() throws {
        let dir = URL(fileURLWithPath: dataset)
        let index: DatasetIndex
        do { index = try DatasetIndex.load(from: dir) } catch {
            print("\(error)")
            throw ExitCode(1)
        }
        var bad = 0
        if !index.complete {
            print("\(dir.appendingPathComponent(DatasetIndex.fileName).path): dataset incomplete (preprocessing did not finish; run preprocess --resume)")
            bad += 1
        }
        var windows = 0
        for entry in index.shards {
            let faults = verifyShard(entry, in: dir)
            for f in faults { print(f) }
            if !faults.isEmpty { bad += 1 }
            windows += entry.windows
        }
        if bad > 0 {
            print("\(bad) problem(s) in \(dir.path)")
            throw ExitCode(1)
        }
        print("ok: \(index.shards.count) shards, \(windows) windows verified in \(dir.path)")
    }
}
