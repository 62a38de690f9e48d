import ArgumentParser
import Dispatch
import Foundation
import Tensor
import Tokenizer

/// `longcrawl bench tokenizer`: GPT2Tokenizer throughput on the path `preprocess` takes, beside tiktoken's in the
/// same run.
struct BenchTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "MB/s of GPT2Tokenizer.encode(bytes:memo:) per document, on one thread and on all cores, beside tiktoken's encode_ordinary.",
        discussion: """
        Books are cut into excerpts the size of the documents preprocess tokenizes; each excerpt is one \
        encode(bytes:memo:) call, and each thread carries its memo from excerpt to excerpt (a fresh one each run), as \
        preprocess's reading threads do; on all cores, thread k takes excerpts k, k + cores, ...
        Example:
          longcrawl bench tokenizer --corpus ../shared/data/corpus-dev
        """
    )

    @OptionGroup var input: CorpusOption

    @Option(help: "Cut each file into excerpts of at least this many bytes, ending before a space (0: whole files).")
    var excerptBytes: Int = 262_144

    @OptionGroup var tokenizer: TokenizerOption

    func run() throws {
        let corpus = input.corpus
        let tok = try tokenizer.load()
        let (files, books) = try readTextCorpus(corpus)
        let docs = books.flatMap { excerpts($0, size: excerptBytes) }
        let bytes = docs.reduce(0) { $0 + $1.count }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        print("corpus \(corpus): \(files.count) files, \(docs.count) documents, \(formatBytes(bytes))")

        func best(_ body: () -> Int) -> (seconds: Double, tokens: Int) {
            var tokens = 0
            return (bestSeconds { tokens = body() }, tokens)
        }
        let one = best {
            var memo = TokenizerMemo()
            return docs.reduce(0) { n, d in n + d.withUnsafeBufferPointer { tok.encode(bytes: $0, memo: &memo) }.count }
        }
        let many = best {
            var counts = [Int](repeating: 0, count: cores)
            counts.withUnsafeMutableBufferPointer { out in
                let slots = out.baseAddress!
                DispatchQueue.concurrentPerform(iterations: cores) { lane in
                    var memo = TokenizerMemo()
                    slots[lane] = stride(from: lane, to: docs.count, by: cores).reduce(0) { n, k in
                        n + docs[k].withUnsafeBufferPointer { tok.encode(bytes: $0, memo: &memo) }.count
                    }
                }
            }
            return counts.reduce(0, +)
        }

        let script = packageRoot.appendingPathComponent("tools/bench_tiktoken.py")
        let (status, out) = try capture(["python3", script.path, String(cores), String(excerptBytes)] + files.map(\.path))
        guard status == 0, let tik = try JSONSerialization.jsonObject(with: out) as? [String: Any],
              let tikOne = tik["one_thread_s"] as? Double, let tikMany = tik["all_threads_s"] as? Double, let tikTokens = tik["tokens"] as? Int,
              let tikBytes = tik["bytes"] as? Int else {
            throw ValidationError("tools/bench_tiktoken.py failed (tiktoken missing? run tools/setup.sh)")
        }
        let mb = Double(bytes) / 1e6
        print("\n| encoder | threads | MB/s | tokens/s | vs tiktoken |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print(String(format: "| tiktoken encode_ordinary | 1 | %.1f | %.2fM | 1.00 |", mb / tikOne, Double(tikTokens) / tikOne / 1e6))
        print(String(format: "| GPT2Tokenizer.encode(bytes:memo:) | 1 | %.1f | %.2fM | %.2f |", mb / one.seconds, Double(one.tokens) / one.seconds / 1e6, tikOne / one.seconds))
        print(String(format: "| tiktoken encode_ordinary_batch | %d | %.1f | %.2fM | 1.00 |", cores, mb / tikMany, Double(tikTokens) / tikMany / 1e6))
        print(String(format: "| GPT2Tokenizer.encode(bytes:memo:), a memo per thread | %d | %.1f | %.2fM | %.2f |", cores, mb / many.seconds, Double(many.tokens) / many.seconds / 1e6, tikMany / many.seconds))
        if one.tokens != tikTokens || many.tokens != tikTokens || bytes != tikBytes {
            print("WARNING: tiktoken saw \(tikBytes) bytes, \(tikTokens) tokens; GPT2Tokenizer \(bytes) bytes, \(one.tokens) and \(many.tokens) tokens")
        }
    }
}

/// `text` cut into excerpts of at least `size` bytes, each cut just before a space so no UTF-8 sequence or word
/// is split; tools/bench_tiktoken.py cuts the same way. `size` <= 0 keeps `text` whole.
func excerpts(_ text: [UInt8], size: Int) -> [[UInt8]] {
    guard size > 0 else { return [text] }
    var out: [[UInt8]] = [], start = 0
    while start < text.count {
        var cut = start + size
        while cut < text.count, text[cut] != 0x20 { cut += 1 }
        cut = min(cut, text.count)
        out.append(Array(text[start..<cut]))
        start = cut
    }
    return out
}

/// The `.txt` files of a folder, sorted, and their bytes: the benchmarks' corpus.
func readTextCorpus(_ folder: String) throws -> (files: [URL], documents: [[UInt8]]) {
    let files = try FileManager.default.contentsOfDirectory(at: URL(fileURLWithPath: folder), includingPropertiesForKeys: nil)
        .filter { $0.pathExtension == "txt" }.sorted { $0.path < $1.path }
    guard !files.isEmpty else { throw ValidationError("\(folder): no .txt files") }
    return (files, try files.map { [UInt8](try Data(contentsOf: $0)) })
}
