import ArgumentParser
import Dispatch
import Foundation
import Support
import Tokenizer

/// `longcrawl bench tokenizer`: GPT2Tokenizer throughput on the path `preprocess` takes, beside tiktoken's and
/// gigatoken's in the same run, on the same documents, with every document's ids checked against tiktoken's.
struct BenchTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "MB/s of GPT2Tokenizer.encode(bytes:memo:) per document, one thread and all cores, beside tiktoken and gigatoken.",
        discussion: """
        Three sets of documents: the books cut into excerpts the size of the documents preprocess tokenizes; \
        web-shaped documents (HTML around the books' paragraphs, this repository's own source code, and text in \
        eight scripts with a Zipf vocabulary each), about 3-12 kB; and the same web documents JSON-escaped as \
        LongCrawl64's JSONL text is (ensure_ascii). Each document is one encode(bytes:memo:) call, each thread \
        carrying its memo from document to document (a fresh one each run), as preprocess's reading threads do; on all \
        cores, thread k takes documents k, k + cores, ... tools/bench_tiktoken.py times tiktoken's encode_ordinary \
        (and _batch) and, when installed, gigatoken's encode (and encode_batch), and returns tiktoken's ids, which \
        every document's ids must equal (gigatoken's too). Best of 3.
        Example:
          longcrawl bench tokenizer --corpus ../shared/data/corpus-dev
        """
    )

    @OptionGroup var input: CorpusOption

    @Option(help: "Cut each file into excerpts of at least this many bytes, ending before a space (0: whole files).")
    var excerptBytes: Int = 262_144

    @Option(help: "Bytes of web-shaped documents (and as many again JSON-escaped, which grow).")
    var webBytes: Int = 16_000_000

    @OptionGroup var tokenizer: TokenizerOption

    func run() throws {
        let tok = try tokenizer.load()
        let (files, books) = try readTextCorpus(input.corpus)
        let web = try webDocuments(books: books, bytes: webBytes)
        let sets = [("books", books.flatMap { excerpts($0, size: excerptBytes) }), ("web", web), ("web, JSON-escaped", web.map(jsonEscaped))]
        let cores = ProcessInfo.processInfo.activeProcessorCount
        print("corpus \(input.corpus): \(files.count) files; \(cores) threads; best of 3 each")
        print("\n| documents | encoder | threads | MB/s | vs tiktoken | vs gigatoken |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for (name, docs) in sets { try compare(name, docs, tok, cores: cores) }
    }

    private func compare(_ name: String, _ docs: [[UInt8]], _ tok: GPT2Tokenizer, cores: Int) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var records: [UInt8] = []
        for d in docs { withUnsafeBytes(of: UInt32(d.count).littleEndian) { records += $0 }; records += d }
        try Data(records).write(to: dir.appendingPathComponent("docs"))

        let script = packageRoot.appendingPathComponent("tools/bench_tiktoken.py")
        let (status, out) = try capture(["python3", script.path, String(cores), dir.appendingPathComponent("docs").path, dir.appendingPathComponent("ids").path])
        struct Timing: Decodable { let oneThreadS: Double, allThreadsS: Double, documentsDiffering: Int? }
        struct Reference: Decodable { let tiktoken: Timing, gigatoken: Timing? }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        guard status == 0, let ref = try? decoder.decode(Reference.self, from: out) else {
            throw ValidationError("tools/bench_tiktoken.py failed (tiktoken missing? run tools/setup.sh)")
        }
        let (tikOne, tikAll, giga) = (ref.tiktoken.oneThreadS, ref.tiktoken.allThreadsS, ref.gigatoken)
        let want = try Data(contentsOf: dir.appendingPathComponent("ids")).withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }

        // Untimed: every document's ids against tiktoken's. Its memo then serves the timed passes, as gigatoken's
        // piece cache, filled by its own untimed pass, serves its timed ones (and a reading thread's memo its next
        // documents); each lane of the threaded runs carries its own from pass to pass.
        var memo = TokenizerMemo(), at = 0, wrong = 0
        for d in docs {
            let n = Int(want[at]) | Int(want[at + 1]) << 16
            if d.withUnsafeBufferPointer({ tok.encode(bytes: $0, memo: &memo) }) != Array(want[(at + 2)..<(at + 2 + n)]) { wrong += 1 }
            at += 2 + n
        }
        let one = bestSeconds {
            for d in docs { _ = d.withUnsafeBufferPointer { tok.encode(bytes: $0, memo: &memo) } }
        }
        final class Lanes: @unchecked Sendable { var memos: [TokenizerMemo] = [] }
        let lanes = Lanes()
        lanes.memos = Array(repeating: TokenizerMemo(), count: cores)
        let all = bestSeconds {
            DispatchQueue.concurrentPerform(iterations: cores) { lane in
                var memo = TokenizerMemo()
                swap(&memo, &lanes.memos[lane])
                defer { swap(&memo, &lanes.memos[lane]) }
                for k in stride(from: lane, to: docs.count, by: cores) { _ = docs[k].withUnsafeBufferPointer { tok.encode(bytes: $0, memo: &memo) } }
            }
        }
        let mb = Double(docs.reduce(0) { $0 + $1.count }) / 1e6
        let label = String(format: "%@ (%d, %.1f MB)", name, docs.count, mb)
        func row(_ encoder: String, _ threads: Int, _ s: Double, _ tiktoken: Double, _ gigatoken: Double?) {
            print(String(format: "| %@ | %@ | %d | %.1f | %.2f | %@ |", label, encoder, threads, mb / s, tiktoken / s,
                         gigatoken.map { String(format: "%.2f", $0 / s) } ?? "-"))
        }
        row("tiktoken encode_ordinary", 1, tikOne, tikOne, giga?.oneThreadS)
        if let g = giga { row("gigatoken encode", 1, g.oneThreadS, tikOne, g.oneThreadS) }
        row("GPT2Tokenizer encode(bytes:memo:)", 1, one, tikOne, giga?.oneThreadS)
        row("tiktoken encode_ordinary_batch", cores, tikAll, tikAll, giga?.allThreadsS)
        if let g = giga { row("gigatoken encode_batch", cores, g.allThreadsS, tikAll, g.allThreadsS) }
        row("GPT2Tokenizer, a memo per thread", cores, all, tikAll, giga?.allThreadsS)
        if wrong > 0 { print("WARNING: \(name): \(wrong) of \(docs.count) documents differ from tiktoken's ids") }
        if let bad = giga?.documentsDiffering, bad > 0 { print("WARNING: \(name): gigatoken differs from tiktoken on \(bad) documents") }
    }
}

/// Web-shaped documents of about `bytes` bytes in all, 3-12 kB each, in turn: a book's paragraphs in HTML markup;
/// a stretch of this repository's Swift and Python sources; and text in one of eight scripts, words drawn from a
/// Zipf vocabulary of that script (so pieces recur as in real text), with Latin-script names, numbers and punctuation.
func webDocuments(books: [[UInt8]], bytes: Int) throws -> [[UInt8]] {
    let sourceFiles = [packageRoot.appendingPathComponent("Sources"), packageRoot.appendingPathComponent("tools"), packageRoot.appendingPathComponent("python")]
        .flatMap { FileManager.default.enumerator(at: $0, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? [] }
        .filter { ["swift", "py"].contains($0.pathExtension) }.sorted { $0.path < $1.path }
    let code = try sourceFiles.flatMap { [UInt8](try Data(contentsOf: $0)) }
    let text = books.flatMap { $0 }
    let scripts: [ClosedRange<UInt32>] = [0x0430...0x044F, 0x03B1...0x03C9, 0x4E00...0x9FA5, 0x0627...0x064A, 0x0905...0x0939,
                                          0xAC00...0xD7A3, 0x0E01...0x0E2E, 0x3041...0x3096]
    var rng = SplitMix64(seed: 30)
    let vocabularies = scripts.map { range in
        (0..<2_000).map { _ in String(String.UnicodeScalarView((0..<(1 + rng.next(below: range.count > 1_000 ? 3 : 8))).map {
            _ in Unicode.Scalar(range.lowerBound + UInt32(rng.next(below: UInt64(range.count))))! })) }
    }
    func zipf(_ n: Int) -> Int { min(n - 1, Int(Double(n) * pow(Double(rng.next(below: 1 << 20) + 1) / Double(1 << 20), 3))) }
    var docs: [[UInt8]] = [], total = 0
    while total < bytes {
        let size = 3_000 + Int(rng.next(below: 9_000))
        var doc: [UInt8]
        switch docs.count % 3 {
        case 0:
            let start = Int(rng.next(below: UInt64(text.count - size)))
            let paragraphs = text[start..<(start + size)].split(separator: 0x0A, omittingEmptySubsequences: true)
            doc = Array("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Chapter \(docs.count)</title></head><body><div class=\"post-body entry-content\" id=\"post-\(rng.next(below: 99_999))\">".utf8)
            for p in paragraphs { doc += Array("\n<p style=\"margin:0 0 1em\">".utf8) + p + Array("</p>".utf8) }
            doc += Array("\n<a href=\"https://example.org/p/\(rng.next(below: 1 << 30))?ref=nav&amp;utm_source=feed\">Next &raquo;</a></div></body></html>".utf8)
        case 1:
            let start = Int(rng.next(below: UInt64(code.count - size)))
            doc = Array(code[start..<(start + size)])
        default:
            let words = vocabularies[docs.count / 3 % scripts.count]
            var s = ""
            while s.utf8.count < size {
                s += words[zipf(words.count)]
                switch rng.next(below: 20) {
                case 0: s += ", "
                case 1: s += ". "
                case 2: s += " \(rng.next(below: 2_030)) "
                case 3: s += " Wikipedia "
                default: s += " "
                }
            }
            doc = Array(s.utf8)
        }
        docs.append(doc)
        total += doc.count
    }
    return docs
}

/// `text` (UTF-8) as the inside of a JSON string with every non-ASCII character escaped (`json.dumps`' default,
/// the form of RedPajama-v2's and LongCrawl64's JSONL text).
func jsonEscaped(_ text: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(text.count + text.count / 8)
    func hex(_ u: UInt32) { out += Array(String(format: "\\u%04x", u).utf8) }
    for s in String(decoding: text, as: UTF8.self).unicodeScalars {
        switch s {
        case "\"": out += [0x5C, 0x22]
        case "\\": out += [0x5C, 0x5C]
        case "\n": out += [0x5C, 0x6E]
        case "\r": out += [0x5C, 0x72]
        case "\t": out += [0x5C, 0x74]
        default:
            if s.value < 0x20 || (s.value >= 0x7F && s.value < 0x10000) { hex(s.value) }
            else if s.value >= 0x10000 { let v = s.value - 0x10000; hex(0xD800 + (v >> 10)); hex(0xDC00 + (v & 0x3FF)) }
            else { out.append(UInt8(s.value)) }
        }
    }
    return out
}

/// `text` cut into excerpts of at least `size` bytes, each cut just before a space so no UTF-8 sequence or word
/// is split. `size` <= 0 keeps `text` whole.
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
