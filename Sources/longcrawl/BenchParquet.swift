import ArgumentParser
import Foundation
import Preprocess

/// `longcrawl bench parquet`: MB/s of text read from a FineWeb-shaped parquet file by our reader, beside pyarrow
/// reading the same column on one thread in the same run.
struct BenchParquet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parquet",
        abstract: "MB/s of the text column of a FineWeb-shaped parquet file: ParquetReader vs pyarrow on one thread, same run; all values, then only those of at least --min-text-bytes.",
        discussion: "Example:\n  longcrawl bench parquet --corpus ../shared/data/corpus-dev --codec snappy"
    )

    /// --corpus: .txt files cut into FineWeb-sized rows (about 3 kB each) for the file's text column.
    @OptionGroup var input: CorpusOption

    @Option(help: "Parquet codec of the file: snappy (pyarrow's default), zstd, gzip or none.")
    var codec: String = "snappy"

    @Option(help: "Times the corpus is repeated in the file.")
    var repeats: Int = 2

    @Option(help: "The filtered read's threshold: text values shorter than this many bytes are dropped (preprocessing's is 65,536 per window).")
    var minTextBytes: Int = 65_536

    func run() throws {
        let corpus = input.corpus
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("fineweb.parquet")
        // pyarrow writes the file (FineWeb's schema, its default row groups) and times its own read of the text column.
        let script = """
        import glob, sys, time, pyarrow as pa, pyarrow.parquet as pq
        import pyarrow.compute as pc
        corpus, out, codec, repeats, least = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        texts = []
        for path in sorted(glob.glob(corpus + "/*.txt")) * repeats:
            body = open(path, encoding="utf-8", errors="replace").read()
            texts += [body[i:i + 3000] for i in range(0, len(body), 3000)]
        n = len(texts)
        table = pa.table({"text": texts, "id": [f"<urn:uuid:{i:012d}>" for i in range(n)], "dump": ["CC-MAIN-2024-10"] * n,
                          "url": [f"https://example.com/{i}" for i in range(n)], "date": ["2024-02-21T08:00:00Z"] * n,
                          "file_path": ["s3://commoncrawl/x.warc.gz"] * n, "language": ["en"] * n,
                          "language_score": pa.array([0.9] * n, pa.float64()), "token_count": pa.array([700] * n, pa.int64())})
        pq.write_table(table, out, compression=codec, row_group_size=4096)
        best = 1e9
        for _ in range(3):
            t0 = time.perf_counter()
            column = pq.read_table(out, columns=["text"], use_threads=False).column("text")
            best = min(best, time.perf_counter() - t0)
        # The same read, then only the values of at least `least` bytes kept (as preprocessing keeps them).
        kept = 1e9
        for _ in range(3):
            t0 = time.perf_counter()
            column = pq.read_table(out, columns=["text"], use_threads=False).column("text")
            column = pc.filter(column, pc.greater_equal(pc.binary_length(column), least))
            kept = min(kept, time.perf_counter() - t0)
        print(n, sum(len(s.encode()) for s in texts), pq.ParquetFile(out).metadata.num_row_groups, best, kept)
        """
        let r = try capture(["python3", "-c", script, corpus, file.path, codec, String(repeats), String(minTextBytes)])
        guard r.status == 0 else { throw ValidationError("pyarrow failed (missing? run tools/setup.sh)") }
        let fields = String(decoding: r.out, as: UTF8.self).split(separator: " ").map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
        guard fields.count == 5, let rows = Int(fields[0]), let textBytes = Int(fields[1]), let pyarrow = Double(fields[3]),
              let pyarrowKept = Double(fields[4]) else {
            throw ValidationError("unexpected pyarrow output: \(String(decoding: r.out, as: UTF8.self))")
        }
        var read = 0
        let ours = try bestSeconds {
            let reader = try ParquetReader(url: file, textColumn: "text", idColumn: nil)
            read = 0
            for g in 0..<reader.rowGroupCount { read += try reader.readRowGroup(g).reduce(0) { $0 + ($1.text?.count ?? 0) } }
        }
        guard read == textBytes else { throw ValidationError("read \(read) text bytes, pyarrow wrote \(textBytes)") }
        // The filtered read measures every value from its length; the lengths must add up to the same total.
        var measured = 0
        let oursKept = try bestSeconds {
            let reader = try ParquetReader(url: file, textColumn: "text", idColumn: nil)
            measured = 0
            for g in 0..<reader.rowGroupCount { measured += try reader.readRowGroup(g, minTextBytes: minTextBytes).reduce(0) { $0 + ($1.textBytes ?? 0) } }
        }
        guard measured == textBytes else { throw ValidationError("measured \(measured) text bytes, pyarrow wrote \(textBytes)") }
        let size = (try? file.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0
        print("file: \(rows) rows in \(fields[2]) row groups, \(codec), \(formatBytes(size)); text column \(formatBytes(textBytes))")
        print(String(format: "pyarrow read_table(columns=[\"text\"], use_threads=False)  %7.1f MB/s", Double(textBytes) / pyarrow / 1e6))
        print(String(format: "ParquetReader, text column                             %7.1f MB/s  (%.2fx pyarrow)",
                     Double(textBytes) / ours / 1e6, pyarrow / ours))
        print(String(format: "pyarrow, then values of >= %d bytes kept (pc.filter)       %7.1f MB/s", minTextBytes, Double(textBytes) / pyarrowKept / 1e6))
        print(String(format: "ParquetReader, readRowGroup(minTextBytes: %d)          %7.1f MB/s  (%.2fx pyarrow)",
                     minTextBytes, Double(textBytes) / oursKept / 1e6, pyarrowKept / oursKept))
        print("(best of 3 runs each)")
    }
}
