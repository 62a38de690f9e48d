import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest
@testable import Preprocess

/// `Fixtures/http_server.py` over `root` on 127.0.0.1, stopped when the test ends: serves files with the faults of
/// a real host (dropped connections, ignored or wrong Range, 503, stalls, redirects, 404).
private final class FaultServer {
    let base: String
    private let process = Process()

    init(root: URL, _ test: XCTestCase) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", packageRoot.appendingPathComponent("Tests/PreprocessTests/Fixtures/http_server.py").path, root.path]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let p = process
        test.addTeardownBlock { p.terminate(); p.waitUntilExit() }
        var line = Data()
        while !line.contains(0x0A) {
            let more = out.fileHandleForReading.availableData
            guard !more.isEmpty else { throw LongCrawlError("test server did not start") }
            line += more
        }
        base = "http://127.0.0.1:" + String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func url(_ mode: String, _ name: String) -> String { "\(base)/\(mode)/\(name)" }

    /// The requests so far as (path, Range header), and the most answered at once.
    func log() throws -> (requests: [(path: String, range: String?)], maxOpen: Int) {
        let body = try ByteStream(url: URL(string: base + "/_log")!, compression: nil).rest()
        let json = try JSONSerialization.jsonObject(with: Data(body)) as! [String: Any]
        let requests = (json["requests"] as! [[Any]]).map { ($0[0] as! String, $0[1] as? String) }
        return (requests, json["max_open"] as! Int)
    }
}

final class HTTPInputTests: XCTestCase {
    private var server: FaultServer!
    private var dir: URL!, srv: URL!
    private var warnings: [String] = []

    /// Served files from data/sample: a gzip JSONL of three books, a plain JSONL of one, a text file, and the gzip
    /// cut short.
    override func setUpWithError() throws {
        dir = try temporaryFolder(self)
        srv = dir.appendingPathComponent("srv")
        try FileManager.default.createDirectory(at: srv, withIntermediateDirectories: true)
        let sample = packageRoot.appendingPathComponent("data/sample")
        func jsonl(_ books: [String]) throws -> Data {
            var out = Data()
            for b in books {
                let text = try String(contentsOf: sample.appendingPathComponent(b + ".txt"), encoding: .utf8)
                out += try JSONSerialization.data(withJSONObject: ["text": text, "id": b]) + Data("\n".utf8)
            }
            return out
        }
        try jsonl(["frankenstein", "meditations", "art_of_war"]).write(to: srv.appendingPathComponent("a.jsonl"))
        XCTAssertEqual(try runProcess("/bin/gzip", ["-n", srv.appendingPathComponent("a.jsonl").path]).status, 0)
        try jsonl(["great_gatsby"]).write(to: srv.appendingPathComponent("b.jsonl"))
        try FileManager.default.copyItem(at: sample.appendingPathComponent("dubliners.txt"), to: srv.appendingPathComponent("c.txt"))
        let gz = try Data(contentsOf: srv.appendingPathComponent("a.jsonl.gz"))
        try gz.prefix(gz.count * 3 / 5).write(to: srv.appendingPathComponent("t.jsonl.gz"))
        server = try FaultServer(root: srv, self)
    }

    private func local(_ name: String) -> String { srv.appendingPathComponent(name).path }

    /// Preprocesses `inputs` into `dir/name` with small shards and quick retries.
    @discardableResult
    private func run(_ inputs: [String], _ name: String, mode: OutputMode = .fresh,
                     _ configure: (inout PreprocessOptions) -> Void = { _ in }) throws -> URL {
        var options = PreprocessOptions()
        options.shardWindows = 1
        options.heldoutFraction = 0.3
        options.workers = 2
        options.http.backoff = 0.01
        options.http.stallSeconds = 0.5
        configure(&options)
        let out = dir.appendingPathComponent(name)
        let p = Preprocessor(inputs: inputs, output: out, options: options, tokenizer: gpt2)
        p.warn = { [unowned self] in warnings.append($0) }
        _ = try p.run(mode: mode)
        return out
    }

    /// The same shard files byte for byte and the same index but for the inputs named (and the listing recorded).
    private func assertSameShards(_ a: URL, _ b: URL, line: UInt = #line) throws {
        func normalized(_ d: URL) throws -> DatasetIndex {
            var index = try DatasetIndex.load(from: d)
            index.created = ""
            index.build?.inputs = []
            index.build?.options["inputs_from"] = nil
            index.build?.options["inputs_from.sha256"] = nil
            return index
        }
        let ia = try normalized(a), ib = try normalized(b)
        XCTAssertTrue(ia.complete && ib.complete, "incomplete dataset", line: line)
        XCTAssertEqual(ia, ib, "indexes differ", line: line)
        XCTAssertFalse(ia.shards.isEmpty, line: line)
        for entry in ia.shards {
            XCTAssertTrue(try Data(contentsOf: a.appendingPathComponent(entry.file)) == Data(contentsOf: b.appendingPathComponent(entry.file)),
                          "\(entry.file) differs", line: line)
        }
    }

    /// The one-line error `body` throws.
    private func error(_ body: () throws -> Void, line: UInt = #line) -> String {
        do { try body() } catch {
            let message = "\(error)"
            XCTAssertFalse(message.contains("\n"), "not one line: \(message)", line: line)
            return message
        }
        XCTFail("no error", line: line)
        return ""
    }

    /// Dropped connections (resumed by Range, or by skipping again when the server ignores Range), 503s, a
    /// redirect and a stall give the shards local files give; so does a listing mixing a local path with URLs.
    func testURLsGiveTheSameShardsAsLocalFiles() throws {
        let reference = try run([local("a.jsonl.gz"), local("b.jsonl"), local("c.txt")], "local")
        let remote = try run([server.url("drop", "a.jsonl.gz"), server.url("flaky", "b.jsonl"), server.url("norange", "c.txt")], "remote")
        try assertSameShards(reference, remote)
        let size = try Data(contentsOf: URL(fileURLWithPath: local("a.jsonl.gz"))).count
        let log = try server.log()
        let drops = log.requests.filter { $0.path == "/drop/a.jsonl.gz" }.map(\.range)
        XCTAssertEqual(Array(drops.prefix(3)), [nil, "bytes=\(size / 3)-", "bytes=\(2 * (size / 3))-"])
        XCTAssertEqual(log.requests.filter { $0.path == "/flaky/b.jsonl" }.count, 3)

        let listing = dir.appendingPathComponent("inputs.txt")
        try ("# RPv2-style URL list\n\n" + [server.url("redirect", "a.jsonl.gz"), local("b.jsonl"), server.url("stall", "c.txt")].joined(separator: "\n") + "\n")
            .write(to: listing, atomically: true, encoding: .utf8)
        let listed = try run([], "listed") { $0.inputsFrom = listing.path }
        try assertSameShards(reference, listed)
        let options = try XCTUnwrap(DatasetIndex.load(from: listed).build?.options)
        XCTAssertEqual(options["inputs_from"], listing.path)
        XCTAssertEqual(options["inputs_from.sha256"]?.count, 64)
        XCTAssertEqual(try server.log().requests.filter { $0.path == "/stall/c.txt" }.count, 2, "a stalled answer is dropped and resumed")
    }

    /// Read once: `mpirun -np 2` with dedup over URLs (one an exact copy of another) fetches each file once, and
    /// gives what one process gives: windows, counters, duplicates.jsonl.
    func testRanksWithDedupFetchEachURLOnce() throws {
        let mpirun = "/usr/bin/mpirun"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: mpirun), "Open MPI's mpirun is not installed")
        try FileManager.default.copyItem(at: srv.appendingPathComponent("c.txt"), to: srv.appendingPathComponent("d.txt"))
        let names = ["a.jsonl.gz", "b.jsonl", "c.txt", "d.txt"]
        let args = ["preprocess"] + names.map { server.url("files", $0) } + ["--dedup", "near", "--shard-windows", "1", "--heldout-fraction", "0.3"]
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        let a = try runProcess(longcrawlBinary, args + ["--out", one.path])
        XCTAssertEqual(a.status, 0, a.err)
        let before = try server.log().requests.count
        let b = try runProcess(mpirun, ["--allow-run-as-root", "--oversubscribe", "-np", "2", longcrawlBinary] + args + ["--out", two.path])
        XCTAssertEqual(b.status, 0, b.err)
        let fetched = try server.log().requests.dropFirst(before).map(\.path).sorted()
        XCTAssertEqual(fetched, names.map { "/files/" + $0 }.sorted(), "each URL fetched once")
        let windows = { (d: URL) in try readDataset(d).map { "\($0.split) \($0.source.document) \($0.tokens.hashValue)" }.sorted() }
        XCTAssertEqual(try windows(two), try windows(one))
        let counts = try XCTUnwrap(DatasetIndex.load(from: one).build?.counts)
        XCTAssertEqual(try DatasetIndex.load(from: two).build?.counts, counts)
        XCTAssertEqual(counts["dropped_duplicate"], 1)
        XCTAssertEqual(try Data(contentsOf: two.appendingPathComponent("duplicates.jsonl")), try Data(contentsOf: one.appendingPathComponent("duplicates.jsonl")))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: two.path).filter { $0.hasSuffix(".tmp") }, [], "scratch left behind")
    }

    /// A 404 stops the run with one line naming the URL; with --skip-missing it (and a missing local path) is
    /// counted as dropped_missing and the rest gives the shards it gives alone.
    func testMissingInputIsTheErrorOrCountedWithSkipMissing() throws {
        let gone = server.url("gone", "x.jsonl.gz")
        let message = error { try run([server.url("files", "a.jsonl.gz"), gone], "fails") }
        XCTAssertEqual(message, "\(gone): not found (HTTP 404) (--skip-missing skips missing inputs)")
        XCTAssertFalse(try DatasetIndex.load(from: dir.appendingPathComponent("fails")).complete)

        let reference = try run([local("a.jsonl.gz"), local("c.txt")], "local")
        let skipped = try run([server.url("files", "a.jsonl.gz"), gone, local("nowhere.jsonl"), local("c.txt")], "skipped") { $0.skipMissing = true }
        let build = try XCTUnwrap(DatasetIndex.load(from: skipped).build)
        XCTAssertEqual(build.counts["dropped_missing"], 2)
        XCTAssertEqual(build.funnel?.prefix(3).map { $0 }, ["records", "dropped_missing", "dropped_unreadable"])
        XCTAssertEqual(build.options["skip_missing"], "true")
        XCTAssertTrue(warnings.contains { $0.contains("\(gone): not found (HTTP 404); skipped (--skip-missing)") }, "\(warnings)")
        let a = try DatasetIndex.load(from: reference), b = try DatasetIndex.load(from: skipped)
        XCTAssertEqual(a.shards, b.shards)
        for entry in a.shards {
            XCTAssertTrue(try Data(contentsOf: reference.appendingPathComponent(entry.file)) == Data(contentsOf: skipped.appendingPathComponent(entry.file)))
        }
    }

    /// A truncated gzip over HTTP is what it is locally: its records up to the cut, then one unreadable record
    /// (the warning names the URL); under --strict, the one-line error naming the URL.
    func testTruncatedGzipIsTheLocalDrop() throws {
        let reference = try run([local("t.jsonl.gz"), local("c.txt")], "local")
        let localWarning = try XCTUnwrap(warnings.first { $0.contains("truncated") })
        warnings = []
        let url = server.url("drop", "t.jsonl.gz")
        let remote = try run([url, server.url("files", "c.txt")], "remote")
        try assertSameShards(reference, remote)
        XCTAssertEqual(try DatasetIndex.load(from: remote).build?.counts["dropped_unreadable"], 1)
        let remoteWarning = try XCTUnwrap(warnings.first { $0.contains("truncated") })
        XCTAssertEqual(remoteWarning, localWarning.replacingOccurrences(of: local("t.jsonl.gz"), with: url))

        let message = error { try run([url], "strict") { $0.strict = true } }
        XCTAssertTrue(message.hasPrefix(url + ":") && message.contains("gzip stream truncated"), message)
    }

    /// A file that cannot be had after the attempts (503s), or whose resume answers the wrong Content-Range, stops
    /// the run with one line naming the URL; the shards already finished are in the index, no other shard file is
    /// there, and --resume once the server answers gives the shards of local files.
    func testAFileThatCannotBeHadStopsCleanlyAndResumes() throws {
        let reference = try run([local("c.txt"), local("a.jsonl.gz")], "local")
        let inputs = [local("c.txt"), server.url("flaky", "a.jsonl.gz")]
        let out = dir.appendingPathComponent("remote")
        let message = error { try run(inputs, "remote") { $0.http.attempts = 2 } }
        XCTAssertEqual(message, server.url("flaky", "a.jsonl.gz") + ": HTTP 503; gave up after 2 attempts")
        let index = try DatasetIndex.load(from: out)
        XCTAssertFalse(index.complete)
        let visible = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { !$0.hasPrefix(".") }
        XCTAssertEqual(Set(visible), Set(index.shards.map(\.file) + [DatasetIndex.fileName]), "a shard file the index does not list")
        try run(inputs, "remote", mode: .resume)
        try assertSameShards(reference, out)

        let bad = server.url("badrange", "c.txt")
        let size = try Data(contentsOf: URL(fileURLWithPath: local("c.txt"))).count
        XCTAssertEqual(error { try run([bad], "badrange") },
                       "\(bad): asked for the bytes from \(size / 3) on, answered with Content-Range 'bytes \(size / 3 + 1)-\(size - 1)/\(size)'")
    }

    /// RedPajama-v2's layout from a URL's path: ids and text field are RPv2's and its duplicates file is fetched from
    /// beside it, as from a local download; a missing duplicates file is the error, or counted with --skip-missing.
    func testRPv2LayoutFromURLs() throws {
        let sample = packageRoot.appendingPathComponent("data/sample")
        let script = """
        import gzip, json, os, sys, pyarrow as pa, pyarrow.parquet as pq
        root, books = sys.argv[1], sys.argv[2:]
        for k, tag in enumerate(["2023-06/0000/en_head", "2023-06/0000/en_middle"]):
            os.makedirs(os.path.dirname(f"{root}/documents/{tag}"), exist_ok=True)
            os.makedirs(os.path.dirname(f"{root}/duplicates/{tag}"), exist_ok=True)
            with gzip.open(f"{root}/documents/{tag}.json.gz", "wt", encoding="utf-8") as f:
                for b in books[2 * k:2 * k + 2]:
                    f.write(json.dumps({"raw_content": open(b, encoding="utf-8").read()}) + "\\n")
            pq.write_table(pa.table({"doc_id": [f"{tag}.json.gz/{k}"]}), f"{root}/duplicates/{tag}.duplicates.parquet")
        """
        let books = ["frankenstein", "meditations", "art_of_war", "dubliners"].map { sample.appendingPathComponent($0 + ".txt").path }
        let made = try runProcess("/usr/bin/env", ["python3", "-c", script, srv.appendingPathComponent("rpv2").path] + books)
        XCTAssertEqual(made.status, 0, made.err)
        let tags = ["2023-06/0000/en_head", "2023-06/0000/en_middle"]
        let reference = try run(tags.map { local("rpv2/documents/\($0).json.gz") }, "local")
        let urls = tags.map { server.url("drop", "rpv2/documents/\($0).json.gz") }
        let remote = try run(urls, "remote")
        try assertSameShards(reference, remote)
        let build = try XCTUnwrap(DatasetIndex.load(from: remote).build)
        XCTAssertEqual(build.counts["dropped_duplicate_rpv2"], 2)
        XCTAssertEqual(Set(try readDataset(remote).map(\.source.document)), ["2023-06/0000/en_head.json.gz/1", "2023-06/0000/en_middle.json.gz/0"])

        try FileManager.default.removeItem(at: srv.appendingPathComponent("rpv2/duplicates/2023-06/0000/en_middle.duplicates.parquet"))
        let dup = server.url("drop", "rpv2/duplicates/2023-06/0000/en_middle.duplicates.parquet")
        XCTAssertEqual(error { try run(urls, "fails") }, "\(dup): not found (HTTP 404) (--skip-missing skips missing inputs)")
        let skipped = try XCTUnwrap(DatasetIndex.load(from: try run(urls, "skipped") { $0.skipMissing = true }).build)
        XCTAssertEqual(skipped.counts["dropped_missing"], 1)
        XCTAssertEqual(skipped.counts["dropped_duplicate_rpv2"], 1)
    }

    /// One connection per process: two reading threads over three URLs never have two answers open at once.
    func testConnectionsAreBounded() throws {
        let reference = try run([local("a.jsonl.gz"), local("b.jsonl"), local("c.txt")], "local")
        let remote = try run(["a.jsonl.gz", "b.jsonl", "c.txt"].map { server.url("files", $0) }, "remote") { $0.http.connections = 1 }
        try assertSameShards(reference, remote)
        XCTAssertEqual(try server.log().maxOpen, 1)
    }

    /// Schemes other than http(s) are refused by name when the inputs are listed.
    func testOtherSchemesAreRefused() {
        XCTAssertEqual(error { _ = try CorpusReader(inputs: ["ftp://example.org/a.jsonl.gz"]) },
                       "ftp://example.org/a.jsonl.gz: unsupported scheme 'ftp': inputs are local paths or http(s) URLs")
    }
}
