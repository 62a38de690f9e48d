import ArgumentParser
import Foundation
import Preprocess

/// `longcrawl bench signals`: MB/s of RedPajama-v2's quality signals on long documents, ours beside RPv2's own
/// Python code, one core each, in the same run; and the largest difference between the two sets of values.
struct BenchSignals: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signals",
        abstract: "MB/s per core of the quality signals (QualitySignals) beside RedPajama-v2's Python signal classes, same run.",
        discussion: """
        Both compute the 15 signals the quality rules use (word count, mean word length, symbol ratio, ellipsis and \
        bullet lines, no-alphabetic words, top 2/3/4-grams, duplicate 5...10-grams) of every .txt file of --corpus, \
        one document at a time on one thread. RPv2's side imports its classes from a RedPajama-Data checkout \
        (--rpv2, app/src) and needs nltk 3.8 (whose WordPunctTokenizer uses `re`), numpy and msgspec in --python.

        Example:
          longcrawl bench signals --rpv2 ~/RedPajama-Data --python ~/venv/bin/python
        """
    )

    @Option(help: "Folder of .txt files (long documents).")
    var corpus: String = packageRoot.appendingPathComponent("data/sample").path

    @Option(help: "A checkout of github.com/togethercomputer/RedPajama-Data (default: $RPV2_DIR; without it only ours runs).")
    var rpv2: String?

    @Option(help: "The Python that runs RPv2's code.")
    var python: String = "python3"

    @Option(help: "The Python that runs RPv2's MinHash (dedupe/minhash.py: numpy, scipy).")
    var minhashPython: String = "python3"

    @Option(help: "Runs of each measurement; the best counts.")
    var runs: Int = 3

    func run() throws {
        let (files, docs) = try readTextCorpus(corpus)
        let mb = Double(docs.reduce(0) { $0 + $1.count }) / 1e6
        print("corpus \(corpus): \(files.count) files, \(formatBytes(Int(mb * 1e6)))")
        var ours: [[Double?]] = []
        let seconds = bestSeconds(runs) { ours = docs.map { QualitySignals(utf8: $0).all().map(\.value) } }
        print("\n| signals | threads | MB/s | vs RPv2 |")
        print("| --- | ---: | ---: | ---: |")
        guard let rpv2 = rpv2 ?? ProcessInfo.processInfo.environment["RPV2_DIR"] else {
            print(String(format: "| QualitySignals | 1 | %.2f | |", mb / seconds))
            print("(no --rpv2 or $RPV2_DIR: RPv2's Python not run)")
            return
        }
        let (status, out) = try capture([python, "-c", Self.script, rpv2 + "/app/src", String(runs)] + files.map(\.path))
        guard status == 0, let result = try JSONSerialization.jsonObject(with: out) as? [String: Any],
              let pySeconds = result["seconds"] as? Double, let values = result["values"] as? [[Any]] else {
            throw ValidationError("RPv2's signal code failed under \(python) (needs nltk==3.8.1, numpy, msgspec)")
        }
        print(String(format: "| RPv2 (Python %@) | 1 | %.2f | 1.00 |", result["python"] as? String ?? "?", mb / pySeconds))
        print(String(format: "| QualitySignals | 1 | %.2f | %.1f |", mb / seconds, pySeconds / seconds))
        var worst = 0.0, nulls = 0
        for (a, b) in zip(ours, values) {
            for (x, y) in zip(a, b) {
                if let x, let y = y as? Double { worst = max(worst, abs(x - y)) } else if !(x == nil && y is NSNull) { nulls += 1 }
            }
        }
        print("largest difference from RPv2's values: \(worst)" + (nulls > 0 ? ", \(nulls) null mismatches" : ""))
        try benchMinHash(docs: docs, files: files, mb: mb, rpv2: rpv2)
    }

    /// MinHash signatures (13-grams, 128 permutations, RPv2's 0.8 bands) of the same documents, normalization
    /// included on both sides: ours (`MinHash` on `QualitySignals`' words) beside RPv2's `dedupe.minhash.MinHash`
    /// on `normalize(text).split()`, as its worker calls it.
    private func benchMinHash(docs: [[UInt8]], files: [URL], mb: Double, rpv2: String) throws {
        let minhash = MinHash(ngram: 13, hashes: 128)
        let seconds = bestSeconds(runs) { for d in docs { _ = minhash.signature(QualitySignals(utf8: d)) } }
        let script = """
        import sys, time
        sys.path.insert(0, sys.argv[1])
        from dedupe.minhash import MinHash
        from utilities.text.normalization import normalize
        m = MinHash(similarity_thresholds=[0.8], ngram_size=13, num_permutations=128, seed=42)
        texts = [open(p, encoding="utf-8").read() for p in sys.argv[3:]]
        best = None
        for _ in range(int(sys.argv[2])):
            t0 = time.perf_counter()
            for t in texts: m.compute_banded_signatures(tuple(normalize(t).split()))
            t = time.perf_counter() - t0
            best = t if best is None else min(best, t)
        print(best)
        """
        let (status, out) = try capture([minhashPython, "-c", script, rpv2 + "/app/src", String(runs)] + files.map(\.path))
        guard status == 0, let py = Double(String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ValidationError("RPv2's MinHash failed under \(minhashPython) (needs numpy, scipy)")
        }
        print("\n| MinHash, 13-grams x 128 | threads | MB/s | vs RPv2 |")
        print("| --- | ---: | ---: | ---: |")
        print(String(format: "| RPv2 dedupe.minhash | 1 | %.2f | 1.00 |", mb / py))
        print(String(format: "| MinHash | 1 | %.2f | %.1f |", mb / seconds, py / seconds))
    }

    /// RPv2's signal classes on each file, timed over the same documents: the best of `runs`, and the values in
    /// `QualitySignals.all()`'s order.
    static let script = """
    import json, platform, sys, time
    sys.path.insert(0, sys.argv[1])
    from core.document import Document
    from core.quality_signals import natural_language as nl, repetitions as rep, lines as ln
    names = ["RPS_Doc_Word_Count", "RPS_Doc_Mean_Word_Length", "RPS_Doc_Symbol_To_Word_Ratio", "RPS_Doc_Frac_Lines_End_With_Ellipsis"]
    first = [getattr(nl, n)() for n in names]
    bullet, no_alph = ln.RPS_Lines_Start_With_Bulletpoint(), nl.RPS_Doc_Frac_No_Alph_Words()
    grams = [getattr(rep, "RPS_Doc_Frac_Chars_Top_%dgram" % n)() for n in (2, 3, 4)] + [getattr(rep, "RPS_Doc_Frac_Chars_Dupe_%dGrams" % n)() for n in range(5, 11)]
    def signals(text):
        d = Document(text, domain=None)
        b = bullet(d)
        return ([s(d)[0][2] for s in first] + [None if b[0][2] is None else sum(v for _, _, v in b) / len(b), no_alph(d)[0][2]]
                + [s(d)[0][2] for s in grams])
    texts = [open(p, encoding="utf-8").read() for p in sys.argv[3:]]
    best = None
    for _ in range(int(sys.argv[2])):
        t0 = time.perf_counter(); values = [signals(t) for t in texts]; t = time.perf_counter() - t0
        best = t if best is None else min(best, t)
    print(json.dumps({"seconds": best, "values": values, "python": platform.python_version()}))
    """
}
