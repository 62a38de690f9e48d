import ArgumentParser
import CLongCrawl
import Foundation
import Preprocess
import Shards
import Support
import Tensor

/// `longcrawl bench import`: `import` of a zarr store made from a real token stream, beside its two parts measured
/// alone in the same run: a plain libblosc decode of the chunk files into memory, and writing the rows into shards.
struct BenchImport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Tokens/s of import on a generated zarr v2 store (blosc lz4, shuffle) beside a plain libblosc decode of its chunks and the shard writing alone.",
        discussion: "Example:\n  longcrawl bench import --corpus ../shared/data/corpus-dev --format zst"
    )

    /// --corpus: .txt files whose tokens fill the array (all of each file, cut into 65,536-token rows).
    @OptionGroup var input: CorpusOption

    @Option(help: "Rows per chunk (the mirror has 2048).")
    var chunkRows: Int = 32

    @Option(help: "Columns per chunk (the mirror has 2048).")
    var chunkColumns: Int = 2048

    @Option(help: "Shard format of the import: hdf5 or zst.")
    var format: String = "zst"

    @Option(help: "zstd level of the import's shards.")
    var level: Int = 3

    @OptionGroup var tokenizer: TokenizerOption

    func validate() throws {
        guard ShardFormat(rawValue: format) != nil else { throw ValidationError("--format must be hdf5 or zst, got '\(format)'") }
        guard chunkRows > 0, chunkColumns > 0 else { throw ValidationError("chunk sizes must be positive") }
    }

    func run() throws {
        let corpus = input.corpus
        let tok = try tokenizer.load()
        let (_, docs) = try readTextCorpus(corpus)
        let stream = docs.flatMap { d in d.withUnsafeBufferPointer { tok.encode(bytes: $0) } }
        let rows = stream.count / windowLength
        guard rows > 0 else { throw ValidationError("\(corpus): fewer than \(windowLength) tokens") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-\(UUID().uuidString)")
        let store = dir.appendingPathComponent("train.zarr")
        try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try writeStore(stream, rows: rows, to: store)
        let bytes = files.reduce(0) { $0 + $1.count }
        let n = Double(rows * windowLength)
        print("array: \(rows) rows of \(corpus) in \(files.count) chunks of \(chunkRows)x\(chunkColumns), blosc lz4 shuffle, \(formatBytes(bytes))")

        // Baseline: the chunk files already in memory, decoded one after another into one buffer.
        var chunk = [UInt8](repeating: 0, count: chunkRows * chunkColumns * 2)
        let decode = try bestSeconds {
            for file in files {
                let got = file.withUnsafeBytes { src in chunk.withUnsafeMutableBytes { blosc_decompress_ctx(src.baseAddress, $0.baseAddress, $0.count, 1) } }
                guard got == chunk.count else { throw ValidationError("blosc failed on a chunk it wrote (\(got))") }
            }
        }
        // The writing alone: the same rows, already in memory, into shards as import writes them.
        let shardFormat = ShardFormat(rawValue: format)!
        var run = 0
        let write = try bestSeconds {
            run += 1
            let folder = dir.appendingPathComponent("write-\(run)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            var w = try ShardWriter(directory: folder, file: shardFormat.fileName(split: .train, number: 0), format: shardFormat, split: .train, level: level)
            try stream.withUnsafeBufferPointer { all in
                for k in 0..<rows {
                    if w.windowCount == 64 {
                        _ = try w.finish()
                        w = try ShardWriter(directory: folder, file: shardFormat.fileName(split: .train, number: k / 64), format: shardFormat, split: .train, level: level)
                    }
                    try w.append(UnsafeBufferPointer(rebasing: all[(k * windowLength)..<((k + 1) * windowLength)]), source: WindowSource(document: "train.zarr:\(k)", offset: 0))
                }
            }
            _ = try w.finish()
        }
        var options = ImportOptions()
        options.format = shardFormat
        options.level = level
        let imported = try bestSeconds {
            run += 1
            _ = try ZarrImporter(inputs: [store.path], output: dir.appendingPathComponent("out-\(run)"), options: options).run(mode: .fresh)
        }
        print("\n| step | tokens/s | vs shard writing alone |")
        print("| --- | ---: | ---: |")
        print(String(format: "| libblosc decode, 1 thread, chunk files in memory | %.1fM | %.2f |", n / decode / 1e6, write / decode))
        print(String(format: "| %@ shard writing alone, rows in memory, level %d, 64 windows a shard | %.1fM | 1.00 |", format, level, n / write / 1e6))
        print(String(format: "| import (read, decode on %d threads, check, write) | %.1fM | %.2f |", options.workers, n / imported / 1e6, write / imported))
        print("(best of 3 runs)")
    }

    /// Writes `.zarray` and every chunk file (edge chunks padded with zeros, as zarr stores them); returns the files' bytes.
    func writeStore(_ tokens: [UInt16], rows: Int, to store: URL) throws -> [Data] {
        let meta: [String: Any] = ["zarr_format": 2, "shape": [rows, windowLength], "chunks": [chunkRows, chunkColumns], "dtype": "<u2",
                                   "order": "C", "fill_value": 0, "filters": NSNull(),
                                   "compressor": ["id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0]]
        try JSONSerialization.data(withJSONObject: meta).write(to: store.appendingPathComponent(".zarray"))
        var files: [Data] = []
        var chunk = [UInt16](repeating: 0, count: chunkRows * chunkColumns)
        var packed = [UInt8](repeating: 0, count: chunk.count * 2 + Int(BLOSC_MAX_OVERHEAD))
        for r in 0..<((rows + chunkRows - 1) / chunkRows) {
            for c in 0..<((windowLength + chunkColumns - 1) / chunkColumns) {
                for i in 0..<chunkRows {
                    for j in 0..<chunkColumns {
                        let (row, column) = (r * chunkRows + i, c * chunkColumns + j)
                        chunk[i * chunkColumns + j] = row < rows && column < windowLength ? tokens[row * windowLength + column] : 0
                    }
                }
                let size = chunk.withUnsafeBytes { src in
                    packed.withUnsafeMutableBytes { blosc_compress_ctx(5, BLOSC_SHUFFLE, 2, src.count, src.baseAddress, $0.baseAddress, $0.count, "lz4", 0, 1) }
                }
                guard size > 0 else { throw ValidationError("blosc_compress_ctx failed (\(size))") }
                let file = Data(packed[0..<Int(size)])
                try file.write(to: store.appendingPathComponent("\(r).\(c)"))
                files.append(file)
            }
        }
        return files
    }
}
