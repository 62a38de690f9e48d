import Foundation
@testable import Model
@testable import Support
import TestSupport
import XCTest
@testable import Training

/// Config files: `{"model": {...}, "train": {...}}` in `data/configs`, `RUN/config.json` and `state.json`; the flat
/// form of earlier versions is still read; a bad value is refused in one line naming the file and the value.
final class ConfigTests: XCTestCase {
    let configs = packageRoot.appendingPathComponent("data/configs")

    func testConfigsLoadAndBadConfigsAreRefused() throws {
        for name in ["tiny", "small", "paper"] { XCTAssertEqual(try RunConfig.load(configs.appendingPathComponent(name + ".json")).model.name, name) }
        var c = try RunConfig.load(configs.appendingPathComponent("tiny.json"))
        for (change, message) in [({ (c: inout RunConfig) in c.model.power = 3 }, "power p must be an even"),
                                  ({ $0.model.heads = 3 }, "must divide d_model"),
                                  ({ $0.model.chunk = 48 }, "must divide context"),
                                  ({ $0.train.context = 1000; $0.model.chunk = 8 }, "must divide 65536"),
                                  ({ $0.model.dModel = 66; $0.model.heads = 2 }, "must be even (rotary pairs)")] as [((inout RunConfig) -> Void, String)] {
            var bad = c
            change(&bad)
            XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
        c.model.name = "x"
        XCTAssertNoThrow(try c.validate())
    }

    /// A config file with a zero or negative size is refused naming the file, the field and the value, in either form.
    func testConfigWithNonPositiveSizesIsNamed() throws {
        let url = try temporaryFolder(self).appendingPathComponent("config.json")
        let tiny = try JSONSerialization.jsonObject(with: Data(contentsOf: configs.appendingPathComponent("tiny.json"))) as! [String: [String: Any]]
        for (section, key, value, message) in [("model", "layers", 0, "layers must be positive, got 0"), ("model", "d_model", -64, "d_model must be positive, got -64"),
                                               ("model", "heads", 0, "heads must be positive, got 0"), ("model", "chunk", 0, "chunk must be positive, got 0"),
                                               ("train", "batch", 0, "batch must be positive, got 0"), ("train", "context", 1000, "chunk (64) must divide context (1000)")] {
            var json = tiny
            json[section]![key] = value
            let flat = json["model"]!.merging(json["train"]!) { a, _ in a }
            for form in [json, flat] as [[String: Any]] {
                try JSONSerialization.data(withJSONObject: form).write(to: url)
                XCTAssertThrowsError(try RunConfig.load(url)) { XCTAssertEqual("\($0)", "\(url.path): config 'tiny': \(message)") }
            }
        }
        try Data(#"{"model": {"name": "tiny", "layers": 2, "d_model": 64, "heads": 2, "power": 2, "chunk": 64, "attention": "sympow"}}"#.utf8).write(to: url)
        XCTAssertThrowsError(try RunConfig.load(url)) { XCTAssertTrue("\($0)".hasPrefix("\(url.path): not a config ("), "\($0)") }
    }

    /// A flat key beside the two sections (`lr` meant for `train`) is refused naming it, not silently dropped.
    func testStrayFlatKeyBesideTheSectionsIsNamed() throws {
        let url = try temporaryFolder(self).appendingPathComponent("config.json")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: configs.appendingPathComponent("tiny.json"))) as! [String: Any]
        json["lr"] = 0.1
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        XCTAssertThrowsError(try RunConfig.load(url)) {
            XCTAssertEqual("\($0)", "\(url.path): key(s) 'lr' outside the \"model\" and \"train\" sections; move each into one")
        }
        json["lr"] = nil
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        XCTAssertNoThrow(try RunConfig.load(url))
    }

    /// tiny.json as the run of `oldState` trained it (`--context 64 --batch 1 --steps 2`).
    func tinyAsTheOldRun() throws -> RunConfig {
        var c = try RunConfig.load(configs.appendingPathComponent("tiny.json"))
        c.train.context = 64; c.train.batch = 1; c.train.steps = 2
        return c
    }

    /// `RUN/config.json` as the version before the two sections wrote it: read as the same config, written back in
    /// two sections.
    func testFlatConfigOfTheEarlierVersionIsRead() throws {
        let url = try temporaryFolder(self).appendingPathComponent("config.json")
        try Data(Self.oldConfig.utf8).write(to: url)
        let config = try RunConfig.load(url)
        XCTAssertEqual(config, try tinyAsTheOldRun())
        let written = try JSONSerialization.jsonObject(with: JSONEncoder().encode(config)) as! [String: Any]
        XCTAssertEqual(Set(written.keys), ["model", "train"])
        XCTAssertEqual(try JSONDecoder().decode(RunConfig.self, from: JSONEncoder().encode(config)), config)
    }

    /// A `state.json` the version before the two sections wrote (its `sha256` over the flat config) loads, a changed
    /// value is still refused, and the run's config file given again is the same config (so `--resume` goes on).
    func testCheckpointStateOfTheEarlierVersionIsRead() throws {
        let folder = try temporaryFolder(self)
        let url = folder.appendingPathComponent(Checkpoint.stateFile)
        try Data(Self.oldState.utf8).write(to: url)
        let state = try Checkpoint.loadState(folder)
        XCTAssertEqual(state.config, try tinyAsTheOldRun())
        XCTAssertEqual(state.step, 2)
        XCTAssertEqual(state.options.dataset, "/tmp/oldrun/ds")
        XCTAssertNil(Trainer.difference(saved: state, config: try tinyAsTheOldRun(), options: state.options, ranks: 1))
        for (old, new) in [("\"step\" : 2", "\"step\" : 3"), ("\"d_model\" : 64", "\"d_model\" : 32")] {
            try Data(Self.oldState.replacingOccurrences(of: old, with: new).utf8).write(to: url)
            XCTAssertThrowsError(try Checkpoint.loadState(folder)) { XCTAssertTrue("\($0)".hasPrefix("\(url.path): checksum mismatch"), "\($0)") }
        }
        // Saved again it is written in two sections, with the digest of those.
        var again = state
        again.sha256 = try again.digest()
        try AtomicFile.writeJSON(again, to: url)
        XCTAssertEqual(try Checkpoint.loadState(folder), again)
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        XCTAssertEqual(Set((object["config"] as! [String: Any]).keys), ["model", "train"])
    }

    /// A run writes its config in two sections, in `RUN/config.json` and in each `state.json`.
    func testRunWritesTheTwoSections() throws {
        let run = try temporaryFolder(self).appendingPathComponent("run")
        var options = TrainOptions(dataset: try sampleDataset(self).path)
        options.saveEvery = 1
        try Trainer(config: try fastConfig(steps: 1), options: options, run: run).train()
        let state = try JSONSerialization.jsonObject(with: Data(contentsOf: Checkpoint.folder(in: run, step: 1).appendingPathComponent(Checkpoint.stateFile)))
        for object in [try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("config.json"))),
                       (state as! [String: Any])["config"]!] {
            XCTAssertEqual(Set((object as! [String: Any]).keys), ["model", "train"])
        }
        XCTAssertEqual(try RunConfig.load(run.appendingPathComponent("config.json")), try fastConfig(steps: 1))
        XCTAssertEqual(try Checkpoint.loadState(Checkpoint.folder(in: run, step: 1)).config, try fastConfig(steps: 1))
    }

    /// Written by the version before the two sections (main at 60c2522): `train --data ds --config
    /// data/configs/tiny.json --context 64 --batch 1 --steps 2 --save-every 2 --out run`, ds being data/sample
    /// preprocessed with `--windows-per-doc 1`.
    static let oldConfig = """
        {
          "attention" : "conformal-sympow",
          "batch" : 1,
          "beta1" : 0.9,
          "beta2" : 0.95,
          "chunk" : 64,
          "context" : 64,
          "d_model" : 64,
          "embed_norm" : true,
          "grad_clip" : 1,
          "heads" : 2,
          "layers" : 2,
          "lr" : 0.003,
          "min_lr" : 0.0003,
          "mlp_ratio" : 4,
          "name" : "tiny",
          "power" : 2,
          "steps" : 2,
          "vocab_size" : 50304,
          "warmup_steps" : 20,
          "weight_decay" : 0.1
        }
        """

    static let oldState = """
        {
          "config" : {
            "attention" : "conformal-sympow",
            "batch" : 1,
            "beta1" : 0.9,
            "beta2" : 0.95,
            "chunk" : 64,
            "context" : 64,
            "d_model" : 64,
            "embed_norm" : true,
            "grad_clip" : 1,
            "heads" : 2,
            "layers" : 2,
            "lr" : 0.003,
            "min_lr" : 0.0003,
            "mlp_ratio" : 4,
            "name" : "tiny",
            "power" : 2,
            "steps" : 2,
            "vocab_size" : 50304,
            "warmup_steps" : 20,
            "weight_decay" : 0.1
          },
          "cursors" : [
            {
              "batch" : 2,
              "batchSize" : 1,
              "context" : 64,
              "order" : "longcrawl",
              "rank" : 0,
              "seed" : 1,
              "world" : 1
            }
          ],
          "elapsed" : 0.22519708099980562,
          "files" : {
            "model.safetensors" : "c1419c56760cee9b18e06e398da235523041e9deddad9d460617c11c582411fe",
            "optimizer.safetensors" : "1e46b3ce702e21f3d3aba7835cc66f97a5df5719bc2c707a26b59e322069ed51"
          },
          "last" : {
            "allreduce_s" : 1.399998836859595e-07,
            "elapsed" : 0.22519708099980562,
            "grad_norm" : 1.4261005547919934,
            "loader_share" : 0.03362766054944919,
            "loss" : 10.749667137410471,
            "lr" : 0.00030000000000000003,
            "mfu" : 0.15004590302194826,
            "offsets" : [
              0
            ],
            "step" : 2,
            "tokens_per_s" : 626.9812730696129,
            "windows" : [
              2
            ]
          },
          "options" : {
            "accumulation" : 1,
            "data" : "\\/tmp\\/oldrun\\/ds",
            "keep" : 3,
            "order" : "longcrawl",
            "recompute" : false,
            "save_every" : 2,
            "seed" : 1
          },
          "rng" : 1,
          "sha256" : "236f0f43f9d510365c2512850718fd6e32b3481c202cf5a586c7d33a8cb992d1",
          "step" : 2,
          "tokens" : 128
        }
        """
}
