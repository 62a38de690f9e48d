import ArgumentParser
import Foundation
import Tensor
import Tokenizer

/// `longcrawl bench tokenizer`: GPT2Tokenizer throughput beside tiktoken's in the same run.
struct BenchTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "MB/s of GPT2Tokenizer on a corpus, one thread and all cores, beside tiktoken's encode_ordinary.",
        discussion: "Example:\n  longcrawl bench tokenizer --corpus ../shared/data/corpus-dev"
    )

    @Option(help: "Folder of .txt files.")
    var corpus: String = "../shared/data/corpus-dev"

    @Option(help: "Threads for the parallel runs (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Folder with encoder.json and vocab.bpe (default: $LONGCRAWL_GPT2_DIR, else the vocabulary built into longcrawl).")
    var tokenizer: String?

    func run() throws {
        let tok = try loadTokenizer(tokenizer)
        let (files, docs) = try readTextCorpus(corpus)
        let bytes = docs.reduce(0) { $0 + $1.count }
        print("corpus \(corpus): \(files.count) files, \(formatBytes(bytes))")

        func best(_ body: () -> Int) -> (seconds: Double, tokens: Int) {
            var times: [Double] = [], tokens = 0
            for _ in 0..<3 { let t0 = now(); tokens = body(); times.append(now() - t0) }
            return (times.min()!, tokens)
        }
        let one = best { docs.reduce(0) { n, d in n + d.withUnsafeBufferPointer { tok.encode(bytes: $0) }.count } }
        let many = best { tok.encodeBatch(docs, threads: threads).reduce(0) { $0 + $1.count } }

        let script = packageRoot.appendingPathComponent("tools/bench_tiktoken.py")
        let (status, out) = try capture(["python3", script.path, String(threads)] + files.map(\.path))
        guard status == 0, let tik = try JSONSerialization.jsonObject(with: out) as? [String: Any],
              let tikOne = tik["one_thread_s"] as? Double, let tikMany = tik["all_threads_s"] as? Double, let tikTokens = tik["tokens"] as? Int else {
            throw ValidationError("tools/bench_tiktoken.py failed (tiktoken missing? run tools/setup.sh)")
        }
        let mb = Double(bytes) / 1e6
        print("\n| encoder | threads | MB/s | tokens/s | vs tiktoken |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print(String(format: "| tiktoken encode_ordinary | 1 | %.1f | %.2fM | 1.00 |", mb / tikOne, Double(tikTokens) / tikOne / 1e6))
        print(String(format: "| GPT2Tokenizer | 1 | %.1f | %.2fM | %.2f |", mb / one.seconds, Double(one.tokens) / one.seconds / 1e6, tikOne / one.seconds))
        print(String(format: "| tiktoken encode_ordinary_batch | %d | %.1f | %.2fM | 1.00 |", threads, mb / tikMany, Double(tikTokens) / tikMany / 1e6))
        print(String(format: "| GPT2Tokenizer.encodeBatch | %d | %.1f | %.2fM | %.2f |", threads, mb / many.seconds, Double(many.tokens) / many.seconds / 1e6, tikMany / many.seconds))
        if one.tokens != tikTokens { print("WARNING: token counts differ: \(one.tokens) vs tiktoken \(tikTokens)") }
    }
}

/// The `.txt` files of a folder, sorted, and their bytes: the benchmarks' corpus.
func readTextCorpus(_ folder: String) throws -> (files: [URL], documents: [[UInt8]]) {
    let files = try FileManager.default.contentsOfDirectory(at: URL(fileURLWithPath: folder), includingPropertiesForKeys: nil)
        .filter { $0.pathExtension == "txt" }.sorted { $0.path < $1.path }
    guard !files.isEmpty else { throw ValidationError("\(folder): no .txt files") }
    return (files, try files.map { [UInt8](try Data(contentsOf: $0)) })
}
