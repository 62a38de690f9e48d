import ArgumentParser
import Foundation
import Shards
import Support
import Tensor
import Tokenizer

/// `longcrawl bench shards`: shard write and read throughput beside the zstd CLI on the same tokens.
struct BenchShards: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shards",
        abstract: "Write and read tokens/s of both shard formats beside the zstd CLI at the same level on the same token stream.",
        discussion: "Example:\n  longcrawl bench shards --corpus ../shared/data/corpus-dev --level 3"
    )

    /// --corpus: .txt files whose tokens are the stream (all of each file, cut into 65,536-token windows).
    @OptionGroup var input: CorpusOption

    @Option(help: "Windows of the stream to use (default: all the corpus gives).")
    var windows: Int?

    @Option(help: "zstd level, for the shards and the CLI alike.")
    var level: Int = 3

    @OptionGroup var tokenizer: TokenizerOption

    func run() throws {
        let corpus = input.corpus
        let tok = try tokenizer.load()
        let (_, docs) = try readTextCorpus(corpus)
        let stream = docs.flatMap { d in d.withUnsafeBufferPointer { tok.encode(bytes: $0) } }
        let windows = min(stream.count / windowLength, self.windows ?? .max)
        guard windows > 0 else { throw ValidationError("\(corpus): fewer than \(windowLength) tokens") }
        let tokens = Array(stream.prefix(windows * windowLength))
        let n = Double(tokens.count)
        print("stream: \(windows) windows (\(tokens.count) tokens of \(corpus)), zstd level \(level)")

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        // Baseline: the zstd CLI on the raw little-endian uint16 stream (one frame, default block layout).
        let raw = dir.appendingPathComponent("tokens.u16")
        try tokens.withUnsafeBytes { try Data($0).write(to: raw) }
        let compressed = dir.appendingPathComponent("tokens.u16.zst")
        let cliWrite = try timeShell("zstd -q -f -\(level) '\(raw.path)' -o '\(compressed.path)'")
        let cliRead = try timeShell("zstd -q -d -c '\(compressed.path)' > /dev/null")
        let cliBytes = try FileManager.default.attributesOfItem(atPath: compressed.path)[.size] as! Int

        var rows: [(String, Double, Double, Int)] = [("zstd CLI", n / cliWrite, n / cliRead, cliBytes)]
        var opens: [(String, Double, Double)] = []
        var buffer = [UInt16](repeating: 0, count: windowLength)
        for format in ShardFormat.allCases {
            var entry: ShardEntry?
            let write = try bestSeconds {
                let w = try ShardWriter(directory: dir, file: format.fileName(split: .train, number: 0), format: format, split: .train, level: level)
                try tokens.withUnsafeBufferPointer { all in
                    for k in 0..<windows {
                        try w.append(UnsafeBufferPointer(rebasing: all[(k * windowLength)..<((k + 1) * windowLength)]),
                                     source: WindowSource(document: "bench", offset: k * windowLength))
                    }
                }
                entry = try w.finish()
            }
            let reader = try ShardReader(url: dir.appendingPathComponent(entry!.file))
            let read = try bestSeconds {
                for k in 0..<windows { try buffer.withUnsafeMutableBufferPointer { try reader.readWindow(k, into: $0) } }
            }
            rows.append(("\(format.rawValue) shard", n / write, n / read, entry!.bytes))
            // What a process's first open of a shard costs: its SHA-256 against index.json, then the reader's open.
            let url = dir.appendingPathComponent(entry!.file)
            opens.append(("\(format.rawValue) shard", try bestSeconds { _ = try sha256(of: url) }, try bestSeconds { _ = try ShardReader(url: url) }))
        }
        print("\n| writer | write tokens/s | read tokens/s | read vs zstd -d | bytes | ratio vs raw |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for (name, w, r, bytes) in rows {
            print(String(format: "| %@ | %.1fM | %.1fM | %.2f | %d | %.2fx |", name, w / 1e6, r / 1e6, r / rows[0].2, bytes, n * 2 / Double(bytes)))
        }
        print("(reads include each window's checksum: XXH64 for zst, Fletcher32 for HDF5; best of 3 runs)")
        print("\n| shard of \(windows) windows | SHA-256 of the file | open (attributes, sources) | read every window |")
        print("| --- | ---: | ---: | ---: |")
        for ((name, hash, open), row) in zip(opens, rows.dropFirst()) {
            print(String(format: "| %@ | %.1f ms | %.1f ms | %.1f ms |", name, hash * 1e3, open * 1e3, n / row.2 * 1e3))
        }
        print("(the file in the page cache, best of 3 runs)")
    }

    /// Best of three wall-clock runs of a shell command.
    func timeShell(_ command: String) throws -> Double {
        try bestSeconds {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = ["-c", command]
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw ValidationError("'\(command)' failed (is the zstd CLI installed? run tools/setup.sh)") }
        }
    }
}
