import ArgumentParser
import Foundation
import Support
import Tensor

/// `longcrawl bench scale`: how `preprocess --recipe longcrawl64` grows with its input and its ranks.
struct BenchScale: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Time and peak memory per rank of preprocess --recipe longcrawl64 on web-shaped corpora of 1x, 2x, 4x and 8x a base size, on 1, 2 and 4 ranks.",
        discussion: """
        Each corpus is made by tools/make_web_corpus.py --distinct --plant 0.05 from the books: distinct documents \
        (each pass through the books maps every word to another of about its frequency), each long document followed \
        by an exact and a near copy 5% of the time each. Every run is a whole preprocess process (gzip JSONL, \
        RedPajama-v2's field names); N ranks run under mpirun --oversubscribe with --workers max(1, cores / N); the \
        peak is each process's maximum resident set (GNU time). s/MB is the time per MB of text, "vs 1x" its ratio \
        to the 1x corpus on the same ranks (1.00 is linear), and the last column the run's time against the same run \
        with --dedup none, timed right after it (what dedup costs, the first pass's scratch included).
        Example:
          longcrawl bench scale --mb 16
        """
    )

    @Option(help: "Folder of .txt books the documents are cut from (default: the development corpus, else data/sample).")
    var corpus: String?

    @Option(help: "Megabytes of text in the 1x corpus.")
    var mb = 16.0

    @Option(help: "Input sizes, as multiples of --mb.")
    var scales = "1,2,4,8"

    @Option(help: "Rank counts (1 runs without mpirun).")
    var ranks = "1,2,4"

    func run() throws {
        let scales = self.scales.split(separator: ",").compactMap { Int($0) }, ranks = self.ranks.split(separator: ",").compactMap { Int($0) }
        guard !scales.isEmpty, scales.allSatisfy({ $0 >= 1 }), !ranks.isEmpty, ranks.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--scales and --ranks take positive integers separated by commas")
        }
        let books = corpus ?? (FileManager.default.fileExists(atPath: "../shared/data/corpus-dev") ? "../shared/data/corpus-dev"
                                                                                                 : packageRoot.appendingPathComponent("data/sample").path)
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-scale-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        print("| input | MB of text | documents | ranks | s | s/MB | peak memory per rank | s/MB vs 1x | vs --dedup none |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        var base: [Int: Double] = [:]
        for scale in scales {
            let web = dir.appendingPathComponent("web-\(scale)")
            let made = try capture(["python3", packageRoot.appendingPathComponent("tools/make_web_corpus.py").path, books, web.path,
                                    "--mb", String(mb * Double(scale)), "--files", String(8 * scale), "--distinct", "--plant", "0.05"])
            guard made.status == 0, let info = try? JSONSerialization.jsonObject(with: made.out) as? [String: Int],
                  let textBytes = info["text_bytes"], let documents = info["documents"] else {
                throw ValidationError("tools/make_web_corpus.py failed (pyarrow missing? run tools/setup.sh)")
            }
            for n in ranks {
                let out = dir.appendingPathComponent("out"), peaks = dir.appendingPathComponent("peaks")
                // One whole preprocess on `n` ranks: its seconds and each rank's peak.
                func preprocess(_ extra: [String]) throws -> (seconds: Double, peaks: [Int]) {
                    try? FileManager.default.removeItem(at: out)
                    try? FileManager.default.removeItem(at: peaks)
                    try FileManager.default.createDirectory(at: peaks, withIntermediateDirectories: true)
                    // Each rank's process under GNU time, which writes its peak (kB) to a file named by the rank.
                    let timed = "p=$1; shift; exec /usr/bin/time -f %M -o \"$p/${OMPI_COMM_WORLD_RANK:-0}\" \"$@\""
                    let command = ["sh", "-c", timed, "sh", peaks.path, me, "preprocess", web.appendingPathComponent("jsonl").path,
                                   "--text-field", "raw_content", "--id-field", "doc_id", "--recipe", "longcrawl64",
                                   "--workers", String(max(1, cores / n)), "--out", out.path] + extra
                    let launch = n == 1 ? command : ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", String(n)] + command
                    let t0 = now()
                    let r = try capture(launch)
                    let seconds = now() - t0
                    guard r.status == 0 else { throw ValidationError("preprocess on \(n) rank(s) of the \(scale)x corpus failed (exit \(r.status))") }
                    return (seconds, try FileManager.default.contentsOfDirectory(atPath: peaks.path).compactMap {
                        Int(try String(contentsOf: peaks.appendingPathComponent($0), encoding: .utf8).split(separator: "\n").last ?? "")
                    }.map { $0 * 1024 })
                }
                let (seconds, peak) = try preprocess([])
                let none = try preprocess(["--dedup", "none"]).seconds
                let perMB = seconds / (Double(textBytes) / 1e6)
                if base[n] == nil { base[n] = perMB }
                print("| \(scale)x | \(String(format: "%.0f", Double(textBytes) / 1e6)) | \(documents) | \(n) | \(String(format: "%.2f", seconds)) | " +
                      "\(String(format: "%.4f", perMB)) | \(formatBytes(peak.max() ?? 0)) | \(String(format: "%.2f", perMB / base[n]!)) | " +
                      "\(String(format: "%.2f", seconds / none)) |")
            }
        }
    }
}
