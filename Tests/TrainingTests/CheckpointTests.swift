import Foundation
@testable import Model
@testable import Shards
@testable import Streaming
@testable import Support
import TestSupport
import XCTest
@testable import Training

/// The tiny config at a short context, for fast steps.
func fastConfig(steps: Int) throws -> RunConfig {
    var c = try RunConfig.load(packageRoot.appendingPathComponent("data/configs/tiny.json"))
    c.train.context = 64; c.train.batch = 2; c.train.steps = steps; c.train.warmupSteps = 3
    return c
}

func losses(_ run: URL) throws -> [Double] {
    try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        .map { try JSONDecoder().decode(StepMetrics.self, from: Data($0.utf8)).loss }
}

final class CheckpointTests: XCTestCase {
    func testSafetensorsRoundTripAndTruncation() throws {
        let dir = try temporaryFolder(self)
        let file = SafetensorsFile(tensors: [.init(name: "a", shape: [2, 3], values: [1, 2, 3, 4, 5, -6]),
                                             .init(name: "b \"quoted\"", shape: [1], values: [.pi])], metadata: ["step": "7"])
        let url = dir.appendingPathComponent("t.safetensors")
        try file.write(to: url)
        XCTAssertEqual(try SafetensorsFile(contentsOf: url), file)
        let bytes = try Data(contentsOf: url)
        XCTAssertEqual(bytes.count % 4, 0)
        for cut in [0, 5, 8, 20, bytes.count - 1] {
            try bytes.prefix(cut).write(to: url)
            XCTAssertThrowsError(try SafetensorsFile(contentsOf: url)) { error in
                XCTAssertTrue("\(error)".hasPrefix(url.path + ": "), "\(error)")
                XCTAssertTrue("\(error)".contains("truncated") || "\(error)".contains("not a safetensors"), "cut at \(cut): \(error)")
            }
        }
    }

    /// Python's safetensors opens both files; names, shapes and values are the documented ones.
    func testCheckpointOpensInPythonSafetensors() throws {
        let run = try temporaryFolder(self).appendingPathComponent("run")
        var options = TrainOptions(dataset: try sampleDataset(self).path)
        options.saveEvery = 2
        let trainer = try Trainer(config: try fastConfig(steps: 2), options: options, run: run)
        try trainer.train()
        let ckpt = try Checkpoint.resolve(run)
        XCTAssertEqual(ckpt.lastPathComponent, "step-000002")
        let r = try runProcess("/usr/bin/env", ["python3", packageRoot.appendingPathComponent("tools/check_safetensors.py").path, ckpt.path])
        XCTAssertEqual(r.status, 0, r.err)
        let sums = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: [String: Any]]
        let params = trainer.model.parameters
        XCTAssertEqual(Set(sums.keys), Set(params.map(\.name)))
        for p in params {
            XCTAssertEqual(sums[p.name]?["shape"] as? [Int], p.value.shape, p.name)
            let sum = p.value.array.reduce(0.0) { $0 + Double($1) }
            XCTAssertEqual(sums[p.name]?["sum"] as? Double ?? .nan, sum, accuracy: 1e-6 * max(1, abs(sum)), p.name)
        }
    }

    /// `train --keep K` leaves the newest K step checkpoints after every save (the final step's among them);
    /// `--keep 0` is refused.
    func testKeepRetainsTheNewestCheckpoints() throws {
        let data = try sampleDataset(self)
        let dir = try temporaryFolder(self)
        let config = packageRoot.appendingPathComponent("data/configs/tiny.json").path
        func steps(_ run: URL) throws -> [Int] { try Checkpoint.all(in: run).map { try Checkpoint.loadState($0).step } }
        for (keep, want) in [(1, [7]), (2, [6, 7]), (5, [2, 4, 6, 7])] {
            let run = dir.appendingPathComponent("keep-\(keep)")
            let r = try runProcess(longcrawlBinary, ["train", "--data", data.path, "--config", config, "--context", "64", "--batch", "2",
                                                     "--steps", "7", "--save-every", "2", "--keep", String(keep), "--out", run.path])
            XCTAssertEqual(r.status, 0, r.err)
            XCTAssertEqual(try steps(run), want, "--keep \(keep)")
            XCTAssertEqual(Checkpoint.all(in: run).map(\.lastPathComponent), want.map { String(format: "step-%06d", $0) })
        }
        let zero = try runProcess(longcrawlBinary, ["train", "--data", data.path, "--config", config, "--context", "64", "--steps", "2",
                                                    "--keep", "0", "--out", dir.appendingPathComponent("zero").path])
        XCTAssertNotEqual(zero.status, 0)
        XCTAssertTrue(zero.err.contains("keep must be positive"), zero.err)
    }

    /// Kill the CLI with SIGKILL after a checkpoint, resume: every step's loss equals an uninterrupted run's,
    /// for both batch orders. Then eval and generate run on the result.
    func testResumeAfterSIGKILLIsBitIdentical() throws {
        let data = try sampleDataset(self)
        let folder = try temporaryFolder(self)
        for order in BatchOrder.allCases {
            let args = ["train", "--data", data.path, "--config", packageRoot.appendingPathComponent("data/configs/tiny.json").path,
                        "--context", "64", "--batch", "2", "--steps", "16", "--warmup", "3", "--save-every", "4", "--order", order.rawValue]
            let straight = folder.appendingPathComponent("straight-\(order)")
            let r = try runProcess(longcrawlBinary, args + ["--out", straight.path])
            XCTAssertEqual(r.status, 0, r.err)
            let killed = folder.appendingPathComponent("killed-\(order)")
            let p = try launch(longcrawlBinary, args + ["--out", killed.path])
            while p.isRunning && Checkpoint.all(in: killed).isEmpty { usleep(1000) }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            // The killed run's lock file stays behind, naming it; the resume takes it over.
            XCTAssertEqual(try String(contentsOf: killed.appendingPathComponent(FolderLock.fileName), encoding: .utf8), "\(p.processIdentifier)\n")
            let at = try Checkpoint.all(in: killed).last.map { try Checkpoint.loadState($0).step } ?? 0
            XCTAssertLessThan(at, 16, "the kill should land before the run ends")
            let resumed = try runProcess(longcrawlBinary, ["train", "--out", killed.path, "--resume"])
            XCTAssertEqual(resumed.status, 0, resumed.err)
            let want = try losses(straight), got = try losses(killed)
            XCTAssertEqual(want.count, 16)
            XCTAssertEqual(got, want, "\(order): losses after resume from step \(at) differ")
            XCTAssertEqual(try Data(contentsOf: Checkpoint.folder(in: straight, step: 16).appendingPathComponent("model.safetensors")),
                           try Data(contentsOf: Checkpoint.folder(in: killed, step: 16).appendingPathComponent("model.safetensors")))
            XCTAssertEqual(Checkpoint.all(in: killed).count, 3, "keeps the last 3 checkpoints")
        }
        let run = folder.appendingPathComponent("straight-longcrawl")
        let windows = folder.appendingPathComponent("eval.h5"), result = folder.appendingPathComponent("result")
        XCTAssertEqual(try runProcess(longcrawlBinary, ["sample", data.path, "--count", "1", "--context", "512", "--out", windows.path]).status, 0)
        let e = try runProcess(longcrawlBinary, ["eval", "--checkpoint", run.path, "--windows", windows.path, "--context", "128", "--out", result.path])
        XCTAssertEqual(e.status, 0, e.err)
        let json = try JSONDecoder().decode(EvalResult.self, from: Data(contentsOf: result.appendingPathComponent("result.json")))
        XCTAssertEqual(json.perPosition.count, 512)
        XCTAssertEqual(json.buckets.last?.end, 512)
        let g = try runProcess(longcrawlBinary, ["generate", "--checkpoint", run.path, "--prompt", "It was", "--tokens", "8", "--seed", "3"])
        XCTAssertEqual(g.status, 0, g.err)
        XCTAssertTrue(g.out.hasPrefix("It was"), g.out)
        XCTAssertEqual(g.out, try runProcess(longcrawlBinary, ["generate", "--checkpoint", run.path, "--prompt", "It was", "--tokens", "8", "--seed", "3"]).out)
    }

    func testCheckpointOfAnotherConfigIsRefused() throws {
        let run = try temporaryFolder(self).appendingPathComponent("run")
        var options = TrainOptions(dataset: try sampleDataset(self).path)
        options.saveEvery = 1
        try Trainer(config: try fastConfig(steps: 1), options: options, run: run).train()
        var other = try fastConfig(steps: 1)
        other.model.dModel = 32
        XCTAssertThrowsError(try Trainer(config: other, options: options, run: run, resume: true)) { error in
            XCTAssertTrue("\(error)".contains("cannot resume") && "\(error)".contains("differs"), "\(error)")
        }
        XCTAssertThrowsError(try Checkpoint.loadModel(try Checkpoint.resolve(run), into: Transformer<Float>(config: other.model, seed: 1))) { error in
            XCTAssertTrue("\(error)".contains("wte has shape [50304, 64], the model expects [50304, 32]"), "\(error)")
        }
        XCTAssertThrowsError(try Trainer(config: try fastConfig(steps: 1), options: options, run: run)) { error in
            XCTAssertTrue("\(error)".contains("--resume"), "starting over a run needs --force: \(error)")
        }
        // A truncated model file is named, not loaded.
        let model = try Checkpoint.resolve(run).appendingPathComponent(Checkpoint.modelFile)
        let bytes = try Data(contentsOf: model)
        try bytes.prefix(bytes.count / 2).write(to: model)
        XCTAssertThrowsError(try Trainer(config: try fastConfig(steps: 1), options: options, run: run, resume: true)) { error in
            // The checksum in state.json catches it before the reader would find it truncated.
            XCTAssertTrue("\(error)".contains(model.path) && "\(error)".contains("SHA-256 differs"), "\(error)")
        }
    }

    /// `checkpoints/best` is replaced while a run goes on: stopped between the swap and the old's removal (as a kill
    /// there would stop it), it holds the new checkpoint, complete, and the old one is still whole beside it; the next
    /// write removes what was left. (It was removed before the new one was renamed in: a kill between left no best.)
    func testBestIsNeverMissingWhileReplaced() throws {
        let run = try temporaryFolder(self).appendingPathComponent("run")
        var options = TrainOptions(dataset: try sampleDataset(self).path)
        options.saveEvery = 1
        try Trainer(config: try fastConfig(steps: 1), options: options, run: run).train()
        let source = try XCTUnwrap(Checkpoint.all(in: run).last)
        var state = try Checkpoint.loadState(source)
        let model = try Checkpoint.loadModel(source, state: state)
        let optimizer = AdamW<Float>(parameters: model.parameters)
        let best = Checkpoint.best(in: run), aside = AtomicFile.temporaryURL(for: best)
        func write(step: Int) throws {
            state.step = step
            try Checkpoint.write(model: model, optimizer: optimizer, state: state, to: best)
        }
        try write(step: 10)
        struct Killed: Error {}
        AtomicFile.afterSwap = {
            XCTAssertEqual(try Checkpoint.loadState(best).step, 20)
            XCTAssertEqual(try Checkpoint.loadState(aside).step, 10)
            throw Killed()
        }
        defer { AtomicFile.afterSwap = nil }
        XCTAssertThrowsError(try write(step: 20)) { XCTAssertTrue($0 is Killed, "\($0)") }
        AtomicFile.afterSwap = nil
        XCTAssertEqual(try Checkpoint.loadState(best).step, 20)
        XCTAssertNoThrow(try Checkpoint.loadModel(best, state: state))
        try write(step: 30)
        XCTAssertEqual(try Checkpoint.loadState(best).step, 30)
        XCTAssertFalse(FileManager.default.fileExists(atPath: aside.path), "the old best is left beside the new")
    }

    /// A NaN loss stops the run naming the step and windows; the last good checkpoint stays the newest.
    func testNaNLossStopsAndKeepsLastGoodCheckpoint() throws {
        let run = try temporaryFolder(self).appendingPathComponent("run")
        var options = TrainOptions(dataset: try sampleDataset(self).path)
        options.saveEvery = 2
        do {
            // Its own scope: the trainer holds the run folder's lock while it lives.
            let trainer = try Trainer(config: try fastConfig(steps: 6), options: options, run: run)
            try trainer.train(stopAfter: 2)
            trainer.model.lnFinal.weight[0] = .nan
            XCTAssertThrowsError(try trainer.train()) { error in
                XCTAssertTrue("\(error)".hasPrefix("step 3: loss nan (windows@offsets: "), "\(error)")
                XCTAssertTrue("\(error)".contains("last good checkpoint: \(Checkpoint.folder(in: run, step: 2).path)"), "\(error)")
            }
        }
        XCTAssertEqual(Checkpoint.all(in: run).map(\.lastPathComponent), ["step-000002"])
        let resumed = try Trainer(config: try fastConfig(steps: 6), options: options, run: run, resume: true)
        XCTAssertEqual(resumed.completedSteps, 2)
        XCTAssertTrue(try resumed.train().allSatisfy { $0.loss.isFinite })
    }

    func testBadInputsGiveOneLineErrors() throws {
        let data = try sampleDataset(self)
        let config = packageRoot.appendingPathComponent("data/configs/tiny.json").path
        let out = try temporaryFolder(self).appendingPathComponent("run").path
        let bad = try runProcess(longcrawlBinary, ["train", "--data", data.path, "--config", config, "--context", "1000", "--out", out])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("context 1000 does not divide 65536; valid: 1, 2, 4"), bad.err)
        // A dataset whose only document went to heldout has an empty train split.
        let book = try temporaryFolder(self)
        try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("data/sample/frankenstein.txt"), to: book.appendingPathComponent("frankenstein.txt"))
        let heldoutOnly = try temporaryFolder(self).appendingPathComponent("ds")
        XCTAssertEqual(try runProcess(longcrawlBinary, ["preprocess", book.path, "--out", heldoutOnly.path, "--heldout-fraction", "0.5"]).status, 0)
        let empty = try runProcess(longcrawlBinary, ["train", "--data", heldoutOnly.path, "--config", config, "--out", out])
        XCTAssertNotEqual(empty.status, 0)
        XCTAssertTrue(empty.err.contains("split 'train' has no windows (splits here: heldout)"), empty.err)
        let none = try runProcess(longcrawlBinary, ["eval", "--checkpoint", out, "--windows", "x.h5", "--out", out])
        XCTAssertTrue(none.err.contains("no checkpoint"), none.err)
    }

    /// `eval` gives the same per-position losses in one chunked pass and in the recurrent form over segments.
    func testEvalChunkedEqualsRecurrentOverSegments() throws {
        let data = try sampleDataset(self)
        let catalog = try WindowCatalog(directory: data, split: .heldout)
        let file = try EvalWindowSampler.sample(catalog, count: 2, seed: 4, context: 2048, dataset: data.path)
        XCTAssertEqual(file.context, 2048, "rows of T + 1 tokens are T inputs and T targets")
        XCTAssertEqual(EvalWindowFile.inferredContext(length: windowLength), windowLength, "whole windows are fed whole, the last target masked")
        var config = try fastConfig(steps: 1)
        config.model.attention = .conformalSympow
        let model = Transformer<Float>(config: config.model, seed: 9)
        var rng = SplitMix64(seed: 10)
        for a in model.attention { for i in 0..<a.wQKVGR.count where a.wQKVGR[i] == 0 { a.wQKVGR[i] = Float(Int(rng.next(below: 1000)) - 500) / 2000 } }
        let whole = try Evaluator.evaluate(model, trainedContext: config.train.context, file: file, context: nil, checkpoint: "-", windowsFile: "-")
        XCTAssertEqual(whole.form, "chunked")
        XCTAssertEqual(whole.perPosition.count, 2048)
        for segment in [256, 512] {
            let carried = try Evaluator.evaluate(model, trainedContext: config.train.context, file: file, context: segment, checkpoint: "-", windowsFile: "-")
            XCTAssertEqual(carried.form, "recurrent, state carried across segments")
            let worst = zip(whole.perPosition, carried.perPosition).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 1e-4, "segment \(segment)")
        }
        XCTAssertThrowsError(try Evaluator.evaluate(model, trainedContext: config.train.context, file: file, context: 1000, checkpoint: "-", windowsFile: "-"))
    }

    /// `eval --mask-seam` leaves out exactly each row's seam target: that position's mean is over the other rows and
    /// every other position is as without the flag; rows that all share one seam are refused.
    func testEvalMaskSeamLeavesOutExactlyTheSeamTargets() throws {
        let config = try fastConfig(steps: 1)
        let model = Transformer<Float>(config: config.model, seed: 9)
        var rng = SplitMix64(seed: 3)
        let length = 257
        let tokens = (0..<(3 * length)).map { _ in UInt16(rng.next(below: 50_257)) }
        let sources = [WindowSource(document: "a", offset: 0, roll: 5), WindowSource(document: "b", offset: 0),
                       WindowSource(document: "c", offset: 0, roll: 200)]
        let file = EvalWindowFile(split: .heldout, seed: 0, dataset: "-", length: length, tokens: tokens, windows: [0, 1, 2], sources: sources)
        XCTAssertEqual((0..<3).map(file.seam), [4, nil, 199])
        func evaluate(_ file: EvalWindowFile, masked: Bool) throws -> EvalResult {
            try Evaluator.evaluate(model, trainedContext: config.train.context, file: file, context: nil, checkpoint: "-", windowsFile: "w.h5", masksSeam: masked)
        }
        let all = try evaluate(file, masked: false), masked = try evaluate(file, masked: true)
        let rows = (0..<3).map { Evaluator.losses(model, row: file.row($0), segment: all.segment) }
        for i in 0..<256 {
            let counted = (0..<3).filter { file.seam($0) != i }.map { rows[$0][i] }
            XCTAssertEqual(masked.perPosition[i], counted.reduce(0, +) / Double(counted.count), accuracy: 1e-12, "position \(i)")
            if i != 4 && i != 199 { XCTAssertEqual(masked.perPosition[i], all.perPosition[i], "position \(i)") }
        }
        XCTAssertNotEqual(masked.perPosition[4], all.perPosition[4])
        let seamed = Evaluator.losses(model, row: file.row(0), segment: all.segment, seam: 4)
        XCTAssertTrue(seamed[4].isNaN)
        XCTAssertEqual(seamed.enumerated().filter { $0.offset != 4 }.map(\.element), rows[0].enumerated().filter { $0.offset != 4 }.map(\.element))
        XCTAssertEqual(masked.maskSeam, true)
        XCTAssertNil(all.maskSeam)
        try masked.write(to: try temporaryFolder(self))
        let one = EvalWindowFile(split: .heldout, seed: 0, dataset: "-", length: length, tokens: Array(tokens.prefix(length)), windows: [0], sources: [sources[0]])
        XCTAssertThrowsError(try evaluate(one, masked: true)) {
            XCTAssertEqual("\($0)", "w.h5: --mask-seam leaves position 4 without a loss (it is the seam of every row); sample more windows")
        }
    }

    /// `train --mask-seam` gives the trainer a masking packer and is recorded in the run's options; without it
    /// the options are written as before the flag existed.
    func testTrainMaskSeamReachesThePacker() throws {
        let data = try sampleDataset(self)
        var options = TrainOptions(dataset: data.path)
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(options), as: UTF8.self).contains("mask_seam"))
        options.maskSeam = true
        let run = try temporaryFolder(self)
        let trainer = try Trainer(config: try fastConfig(steps: 1), options: options, run: run)
        XCTAssertTrue(trainer.packer.masksSeam)
        XCTAssertTrue(try String(contentsOf: run.appendingPathComponent("options.json"), encoding: .utf8).contains("\"mask_seam\" : true"))
        XCTAssertFalse(try Trainer(config: try fastConfig(steps: 1), options: TrainOptions(dataset: data.path), run: try temporaryFolder(self)).packer.masksSeam)
    }
}
