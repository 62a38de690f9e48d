import Foundation
@testable import Shards
import TestSupport
import XCTest
@testable import Preprocess

/// A RedPajama-v2 download made by Python: two snapshots, head and middle, gzip JSONL of CCNet records (text in
/// `raw_content`, no id field), duplicates parquet written by pyarrow for three of the four shards.
private let makeRPv2 = """
import gzip, json, os, sys, pyarrow as pa, pyarrow.parquet as pq
root, books = sys.argv[1], sys.argv[2:]
tags = ["2023-06/0000/en_head", "2023-06/0000/en_middle", "2023-14/0001/en_head", "2023-14/0001/en_middle"]
for k, tag in enumerate(tags):
    os.makedirs(os.path.dirname(f"{root}/documents/{tag}"), exist_ok=True)
    rows = ["a short page", open(books[2 * k], encoding="utf-8").read(), open(books[2 * k + 1], encoding="utf-8").read()]
    with gzip.open(f"{root}/documents/{tag}.json.gz", "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"raw_content": r, "url": "http://x", "digest": "sha1:x", "bucket": tag.split("_")[1]}) + "\\n")
    if k == 3:
        continue
    os.makedirs(os.path.dirname(f"{root}/duplicates/{tag}"), exist_ok=True)
    flagged = [f"{tag}.json.gz/{k % 3}"]
    pq.write_table(pa.table({"shard_id": [tag] * len(flagged), "doc_id": flagged, "digest": ["sha1:x"] * len(flagged)}),
                   f"{root}/duplicates/{tag}.duplicates.parquet")
os.makedirs(f"{root}/quality_signals/2023-06/0000", exist_ok=True)
open(f"{root}/quality_signals/2023-06/0000/en_head.signals.json.gz", "wb").write(b"not read")
"""

final class RPv2LayoutTests: XCTestCase {
    /// The root folder is recognized: only documents/ is read, ids are RPv2's, flagged documents are dropped as
    /// dropped_duplicate_rpv2, and the shard without a duplicates file is reported on stderr and in index.json.
    func testRPv2FolderFlagsAndIds() throws {
        let corpus = try requireCorpusDev()
        let books = ["beowulf", "great_gatsby", "frankenstein", "art_of_war", "on_liberty", "meditations", "dubliners", "the_prince"]
        let dir = try temporaryFolder(self), root = dir.appendingPathComponent("rpv2")
        let made = try runProcess("/usr/bin/env", ["python3", "-c", makeRPv2, root.path] + books.map { corpus.appendingPathComponent($0 + ".txt").path })
        XCTAssertEqual(made.status, 0, made.err)
        let out = dir.appendingPathComponent("ds")
        let r = try runProcess(longcrawlBinary, ["preprocess", root.path, "--out", out.path, "--heldout-fraction", "0.3"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("1 of 4 RedPajama-v2 shards have no duplicates") && r.err.contains("2023-14/0001/en_middle"), r.err)
        let build = try XCTUnwrap(try DatasetIndex.load(from: out).build)
        XCTAssertEqual(build.options["rpv2.duplicates_missing"], "2023-14/0001/en_middle")
        XCTAssertEqual(build.options["rpv2.shards"], "4")
        // Flagged: row 0 of the first shard (short anyway: too_short comes first), rows 1 and 2 of the next two.
        XCTAssertEqual(build.counts["records"], 12)
        XCTAssertEqual(build.counts["dropped_too_short"], 4)
        XCTAssertEqual(build.counts["dropped_duplicate_rpv2"], 2)
        XCTAssertEqual(build.counts["kept"], 6)
        XCTAssertEqual(build.funnel?.prefix(6).map { $0 }, ["records", "dropped_unreadable", "dropped_empty", "dropped_too_short", "dropped_duplicate_rpv2", "dropped_too_few_tokens"])
        let ids = Set(try readDataset(out).map(\.source.document))
        XCTAssertEqual(ids, ["2023-06/0000/en_head.json.gz/1", "2023-06/0000/en_head.json.gz/2", "2023-06/0000/en_middle.json.gz/2",
                             "2023-14/0001/en_head.json.gz/1", "2023-14/0001/en_middle.json.gz/1", "2023-14/0001/en_middle.json.gz/2"])

        // signals: every document of one documents file under RPv2's ids, flagged ones included.
        let s = try runProcess(longcrawlBinary, ["signals", root.appendingPathComponent("documents/2023-06/0000/en_middle.json.gz").path])
        XCTAssertEqual(s.status, 0, s.err)
        let lines = s.out.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines.map { $0["id"] as? String }, (0..<3).map { "2023-06/0000/en_middle.json.gz/\($0)" })
        XCTAssertEqual(lines[0]["rps_doc_word_count"] as? Int, 3)

        // A duplicates file that exists but cannot be read stops the run, naming both files: going on would keep
        // the duplicates it flags.
        let flags = root.appendingPathComponent("duplicates/2023-14/0001/en_head.duplicates.parquet")
        try Data("PAR1 not a parquet file".utf8).write(to: flags)
        let bad = try runProcess(longcrawlBinary, ["preprocess", root.path, "--out", dir.appendingPathComponent("bad").path])
        XCTAssertNotEqual(bad.status, 0)
        let message = bad.err.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(message.contains("2023-14/0001/en_head.json.gz") && message.contains("duplicate flags")
                      && message.contains("en_head.duplicates.parquet"), bad.err)
    }
}
