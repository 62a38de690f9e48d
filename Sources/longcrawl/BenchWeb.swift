import ArgumentParser
import Foundation
import Preprocess
import Shards
import Support
import Tensor

/// `longcrawl bench web`: MB/s of text through `preprocess` on a web-shaped corpus, beside a Python pass that
/// only decompresses and parses the same files, pyarrow reading the same texts, and `zcat`, in the same run.
struct BenchWeb: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "web",
        abstract: "MB/s of text through preprocess on a web-shaped corpus (gzip JSONL, parquet) vs Python and pyarrow, same run.",
        discussion: """
        The corpus (tools/make_web_corpus.py) is cut from the books of --corpus at log-normal lengths: median 3 kB, one \
        document in 300 above 65,536 bytes, every 3,000th a whole book (LongCrawl64 kept 0.03% of its documents); as gzip JSONL (RedPajama-v2's raw_content, doc_id) \
        and snappy parquet (FineWeb's text, id). Each figure is the best of --runs.

        Example:
          longcrawl bench web --corpus ../shared/data/corpus-dev --mb 256
        """
    )

    @Option(help: "Folder of .txt books the documents are cut from (default: the development corpus, else data/sample).")
    var corpus: String?

    @Option(help: "Megabytes of text in the corpus.")
    var mb: Double = 128

    @Option(help: "Files of each kind.")
    var files: Int = 8

    @Option(help: "preprocess --workers (default: all cores).")
    var workers: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Runs of each measurement; the best counts.")
    var runs: Int = 3

    @Option(help: "Also time preprocess with a recipe (longcrawl64: its quality rules and near dedup) on the JSONL, beside the run without.")
    var recipe: String?

    @Option(help: "Also time preprocess with this text encoding (json: LongCrawl64's JSON escape) on the JSONL, beside raw.")
    var textEncoding: TextEncoding?

    func validate() throws {
        guard recipe == nil || recipe == "longcrawl64" else { throw ValidationError("--recipe must be longcrawl64, got '\(recipe!)'") }
    }

    func run() throws {
        let books = corpus ?? (FileManager.default.fileExists(atPath: "../shared/data/corpus-dev") ? "../shared/data/corpus-dev"
                                                                                                 : packageRoot.appendingPathComponent("data/sample").path)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-web-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let web = dir.appendingPathComponent("web")
        let made = try capture(["python3", packageRoot.appendingPathComponent("tools/make_web_corpus.py").path, books, web.path,
                                "--mb", String(mb), "--files", String(files)])
        guard made.status == 0, let corpusInfo = try? JSONSerialization.jsonObject(with: made.out) as? [String: Int],
              let textBytes = corpusInfo["text_bytes"], let documents = corpusInfo["documents"], let long = corpusInfo["long_documents"] else {
            throw ValidationError("tools/make_web_corpus.py failed (pyarrow missing? run tools/setup.sh)")
        }
        let jsonl = web.appendingPathComponent("jsonl"), parquet = web.appendingPathComponent("parquet")
        let gzBytes = try folderBytes(jsonl), pqBytes = try folderBytes(parquet)
        print("corpus: \(documents) documents, \(formatBytes(textBytes)) of text, \(long) of >= 65,536 bytes; " +
              "\(files) gzip JSONL files (\(formatBytes(gzBytes))), \(files) parquet files (\(formatBytes(pqBytes)))")

        // The baselines, each on one thread: what reading alone costs in Python, and zcat's decompression.
        let script = """
        import glob, gzip, json, sys, time, pyarrow.parquet as pq
        web, runs = sys.argv[1], int(sys.argv[2])
        def best(f):
            return min(t for t in (timed(f) for _ in range(runs)))
        def timed(f):
            t0 = time.perf_counter(); f(); return time.perf_counter() - t0
        def jsonl():
            for path in sorted(glob.glob(web + "/jsonl/*.gz")):
                with gzip.open(path, "rb") as f:
                    for line in f: json.loads(line)
        def parquet():
            for path in sorted(glob.glob(web + "/parquet/*.parquet")):
                pq.read_table(path, columns=["text"], use_threads=False)
        print(best(jsonl), best(parquet))
        """
        let py = try capture(["python3", "-c", script, web.path, String(runs)])
        let pyFields = String(decoding: py.out, as: UTF8.self).split(separator: " ").compactMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard py.status == 0, pyFields.count == 2 else { throw ValidationError("the Python baseline failed: \(String(decoding: py.out, as: UTF8.self))") }
        let zcat = try bestSeconds(runs) {
            let r = try capture(["sh", "-c", "zcat \(jsonl.path)/*.gz > /dev/null"])
            guard r.status == 0 else { throw ValidationError("zcat failed") }
        }

        let tokenizer = try loadTokenizer(nil)
        /// One timed run of `preprocess` over `input`: its seconds and the documents it kept.
        func preprocess(_ input: URL, textField: String, idField: String, recipe: Bool = false,
                        encoding: TextEncoding = .raw) throws -> (seconds: Double, kept: Int) {
            let out = dir.appendingPathComponent("out")
            try? FileManager.default.removeItem(at: out)
            var options = PreprocessOptions()
            options.textField = textField; options.idField = idField; options.workers = workers; options.textEncoding = encoding
            if recipe { options.rules = QualityThresholds.longcrawl64.rules; options.dedup = DedupSettings(mode: .near) }
            let p = Preprocessor(inputs: [input.path], output: out, options: options, tokenizer: tokenizer)
            p.warn = { _ in }
            let t0 = now()
            let kept = try p.run(mode: .fresh).index.build?.counts["kept"] ?? 0
            return (now() - t0, kept)
        }
        /// The best of `runs` of each, the runs of all of them alternated, so that a change in the machine's load
        /// falls on each alike.
        func best(_ kinds: [() throws -> (seconds: Double, kept: Int)]) throws -> [(seconds: Double, kept: Int)] {
            var out = Array(repeating: (seconds: Double.infinity, kept: 0), count: kinds.count)
            for _ in 0..<runs {
                for (k, kind) in kinds.enumerated() { let r = try kind(); out[k] = (min(out[k].seconds, r.seconds), r.kept) }
            }
            return out
        }
        let measured = try best([{ try preprocess(jsonl, textField: "raw_content", idField: "doc_id") },
                                 { try preprocess(parquet, textField: "text", idField: "id") }]
                                + (recipe == nil ? [] : [{ try preprocess(jsonl, textField: "raw_content", idField: "doc_id", recipe: true) }])
                                + (textEncoding == nil ? [] : [{ try preprocess(jsonl, textField: "raw_content", idField: "doc_id", encoding: textEncoding!) }]))
        let ours = measured[0], oursParquet = measured[1]
        guard ours.kept == oursParquet.kept else { throw ValidationError("JSONL kept \(ours.kept) documents, parquet \(oursParquet.kept)") }

        func rate(_ s: Double) -> Double { Double(textBytes) / s / 1e6 }
        print(String(format: "zcat of the JSONL files (1 thread)                          %7.1f MB/s of text", rate(zcat)))
        print(String(format: "Python: gzip + json.loads of every line (1 thread)          %7.1f MB/s", rate(pyFields[0])))
        print(String(format: "preprocess, gzip JSONL (%d workers)                          %7.1f MB/s  (%.2fx Python, %.2fx zcat)", workers,
                     rate(ours.seconds), pyFields[0] / ours.seconds, zcat / ours.seconds))
        print(String(format: "pyarrow read_table(columns=[\"text\"], use_threads=False)     %7.1f MB/s", rate(pyFields[1])))
        print(String(format: "preprocess, parquet (%d workers)                             %7.1f MB/s  (%.2fx pyarrow)", workers,
                     rate(oursParquet.seconds), pyFields[1] / oursParquet.seconds))
        if recipe != nil {
            let withRecipe = measured[2]
            print(String(format: "preprocess --recipe longcrawl64, gzip JSONL (%d workers)     %7.1f MB/s  (%.3fx without the recipe); kept %d", workers,
                         rate(withRecipe.seconds), ours.seconds / withRecipe.seconds, withRecipe.kept))
        }
        if let textEncoding {
            let encoded = measured.last!
            print(String(format: "preprocess --text-encoding %@, gzip JSONL (%d workers)       %7.1f MB/s  (%.3fx raw); kept %d", textEncoding.rawValue, workers,
                         rate(encoded.seconds), ours.seconds / encoded.seconds, encoded.kept))
        }
        print("kept \(ours.kept) documents (of \(long) of >= 65,536 bytes); best of \(runs) runs each, the kinds alternated")
    }

    private func folderBytes(_ dir: URL) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).reduce(0) {
            $0 + ((try? dir.appendingPathComponent($1).resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0)
        }
    }
}
