import Foundation
@testable import Shards
@testable import Support
import TestSupport
@testable import Tokenizer
import XCTest
@testable import Training

final class TextEncodingTrainingTests: XCTestCase {
    /// A model trained on LongCrawl64's JSON-escaped text records it in its checkpoint; `generate` then feeds it the
    /// escaped prompt and prints its output unescaped: the CLI's text equals the prompt plus the unescaped decoding
    /// of what `Generator` gives for the escaped prompt. Raw-text runs record nothing (as before the field existed).
    func testGenerateFollowsTheCheckpointsTextEncoding() throws {
        let data = try temporaryFolder(self).appendingPathComponent("ds")
        let r = try runProcess(longcrawlBinary, ["preprocess", packageRoot.appendingPathComponent("data/sample").path, "--out", data.path,
                                                 "--windows-per-doc", "all", "--text-encoding", "json"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(try DatasetIndex.load(from: data).textEncoding, .json)
        let run = try temporaryFolder(self).appendingPathComponent("run")
        var options = TrainOptions(dataset: data.path)
        options.saveEvery = 2
        try Trainer(config: try fastConfig(steps: 2), options: options, run: run).train()
        let ckpt = try Checkpoint.resolve(run)
        let state = try Checkpoint.loadState(ckpt)
        XCTAssertEqual(state.options.textEncoding, .json)

        let prompt = "Il était une fois\n\"à\" 😀"
        let g = try runProcess(longcrawlBinary, ["generate", "--checkpoint", run.path, "--prompt", prompt, "--tokens", "24", "--seed", "5",
                                                 "--temperature", "1", "--top-k", "0"])
        XCTAssertEqual(g.status, 0, g.err)
        let tokenizer = try GPT2Tokenizer.builtIn()
        var escaped: [UInt8] = []
        Array(prompt.utf8).withUnsafeBufferPointer { JSONText.escape($0, into: &escaped) }
        XCTAssertEqual(String(decoding: escaped, as: UTF8.self), #"Il \u00e9tait une fois\n\"\u00e0\" \ud83d\ude00"#)
        let promptIds: [UInt16] = escaped.withUnsafeBufferPointer { tokenizer.encode(bytes: $0) }
        let ids = promptIds.map { Int32($0) }
        let out = Generator.generate(try Checkpoint.loadModel(ckpt, state: state), prompt: ids, count: 24, temperature: 1, topK: 0, seed: 5)
        let bytes: [UInt8] = tokenizer.decode(out.map { UInt16($0) })
        let text = String(decoding: JSONText.unescape(bytes), as: UTF8.self)
        XCTAssertEqual(g.out, prompt + text + "\n")

        // A raw-text run leaves the key out of its options.
        let rawRun = try temporaryFolder(self).appendingPathComponent("raw")
        options = TrainOptions(dataset: try sampleDataset(self).path)
        options.saveEvery = 1
        try Trainer(config: try fastConfig(steps: 1), options: options, run: rawRun).train()
        let saved = try String(contentsOf: Checkpoint.resolve(rawRun).appendingPathComponent("state.json"), encoding: .utf8)
        XCTAssertFalse(saved.contains("text_encoding"))
    }

    /// A checkpoint state of each earlier version opens (version 1 had no `version` key and no text encoding); a
    /// newer version is refused by name.
    func testEarlierCheckpointVersionsOpen() throws {
        let v1 = packageRoot.appendingPathComponent("Tests/Fixtures/formats/state-v1")
        let state = try Checkpoint.loadState(v1)
        XCTAssertNil(state.version)
        XCTAssertNil(state.options.textEncoding)
        XCTAssertEqual(state.step, 2)
        let newer = try temporaryFolder(self)
        var json = try String(contentsOf: v1.appendingPathComponent("state.json"), encoding: .utf8)
        json = json.replacingOccurrences(of: #""step" : 2,"#, with: #""step" : 2, "version" : 99,"#)
        try json.write(to: newer.appendingPathComponent("state.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Checkpoint.loadState(newer)) { XCTAssertTrue("\($0)".contains("checkpoint version 99, this build reads 1 to 2"), "\($0)") }
    }
}
