import Foundation
@testable import Model
@testable import Shards
@testable import Streaming
@testable import Support
import TestSupport
import XCTest
@testable import Training

/// A dataset of the bundled sample (10 train windows, 2 heldout), made by the CLI.
func sampleDataset(_ test: XCTestCase) throws -> URL {
    let dir = try temporaryFolder(test).appendingPathComponent("ds")
    let r = try runProcess(longcrawlBinary, ["preprocess", packageRoot.appendingPathComponent("data/sample").path, "--out", dir.path,
                                             "--windows-per-doc", "all"])
    XCTAssertEqual(r.status, 0, r.err)
    return dir
}

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
        var options = TrainOptions(data: try sampleDataset(self).path)
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
        var options = TrainOptions(data: try sampleDataset(self).path)
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
        var options = TrainOptions(data: try sampleDataset(self).path)
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
        var options = TrainOptions(data: try sampleDataset(self).path)
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
        XCTAssertEqual(resumed.step, 2)
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
        XCTAssertEqual(Evaluator.inputLength(file.length), 2048, "rows of T + 1 tokens are T inputs and T targets")
        XCTAssertEqual(Evaluator.inputLength(windowLength), windowLength, "whole windows are fed whole, the last target masked")
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
        var options = TrainOptions(data: data.path)
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(options), as: UTF8.self).contains("mask_seam"))
        options.maskSeam = true
        let run = try temporaryFolder(self)
        let trainer = try Trainer(config: try fastConfig(steps: 1), options: options, run: run)
        XCTAssertTrue(trainer.packer.masksSeam)
        XCTAssertTrue(try String(contentsOf: run.appendingPathComponent("options.json"), encoding: .utf8).contains("\"mask_seam\" : true"))
        XCTAssertFalse(try Trainer(config: try fastConfig(steps: 1), options: TrainOptions(data: data.path), run: try temporaryFolder(self)).packer.masksSeam)
    }
}

/// The demo's commands write nothing of the C libraries to stderr. HDF5's atexit handler used to close every
/// open identifier while the packer's threads still held shard readers, so about one `train` in three ended with
/// `HDF5-DIAG ... H5Dclose(): not a dataset ID`: `train` runs several times here.
final class QuietLibrariesTests: XCTestCase {
    func testDemoCommandsWriteNoLibraryDiagnostics() throws {
        let data = try sampleDataset(self)
        let dir = try temporaryFolder(self)
        let config = packageRoot.appendingPathComponent("data/configs/tiny.json").path
        let windows = dir.appendingPathComponent("eval.h5").path
        var commands: [[String]] = [["inspect", data.path, "--lines", "1"], ["verify", data.path]]
        for i in 0..<6 {
            commands.append(["train", "--data", data.path, "--config", config, "--steps", "4", "--save-every", "2",
                             "--out", dir.appendingPathComponent("run\(i)").path])
        }
        let run = dir.appendingPathComponent("run0").path
        commands += [["sample", data.path, "--split", "heldout", "--count", "1", "--seed", "0", "--context", "1024", "--out", windows],
                     ["eval", "--checkpoint", run, "--windows", windows, "--out", dir.appendingPathComponent("eval").path],
                     ["generate", "--checkpoint", run, "--prompt", "It was", "--tokens", "5", "--seed", "1"]]
        for args in commands {
            let r = try runProcess(longcrawlBinary, args)
            XCTAssertEqual(r.status, 0, "\(args[0]): \(r.err)")
            for marker in ["HDF5-DIAG", "Error detected in", "zstd:", "OpenBLAS"] {
                XCTAssertFalse(r.err.contains(marker), "\(args[0]) wrote library diagnostics: \(r.err)")
            }
        }
    }
}

/// Run and checkpoint folders are read only within themselves: a symlinked checkpoint or checkpoint file that
/// leads elsewhere is refused by `--resume`, `eval` and `generate`, naming it.
final class CheckpointContainmentTests: XCTestCase {
    func testSymlinksOutOfRunAndCheckpointFoldersAreRefused() throws {
        let data = try sampleDataset(self)
        let dir = try temporaryFolder(self)
        let config = packageRoot.appendingPathComponent("data/configs/tiny.json").path
        let run = dir.appendingPathComponent("run"), other = dir.appendingPathComponent("other")
        for r in [run, other] {
            let t = try runProcess(longcrawlBinary, ["train", "--data", data.path, "--config", config, "--context", "64", "--steps", "2",
                                                     "--save-every", "2", "--out", r.path])
            XCTAssertEqual(t.status, 0, t.err)
        }
        let fm = FileManager.default
        // A newer checkpoint that is a symlink into another run.
        let planted = Checkpoint.folder(in: run, step: 9)
        try fm.createSymbolicLink(at: planted, withDestinationURL: Checkpoint.folder(in: other, step: 2))
        let windows = dir.appendingPathComponent("w.h5").path
        XCTAssertEqual(try runProcess(longcrawlBinary, ["sample", data.path, "--split", "heldout", "--count", "1", "--context", "64", "--out", windows]).status, 0)
        let commands = [["train", "--out", run.path, "--resume"],
                        ["eval", "--checkpoint", run.path, "--windows", windows, "--out", dir.appendingPathComponent("e").path],
                        ["generate", "--checkpoint", run.path, "--prompt", "a", "--tokens", "2"]]
        for args in commands {
            let r = try runProcess(longcrawlBinary, args)
            XCTAssertNotEqual(r.status, 0, args[0])
            XCTAssertTrue(r.err.contains("\(planted.path): checkpoint folder leads outside the run folder"), "\(args[0]): \(r.err)")
        }
        try fm.removeItem(at: planted)
        // A checkpoint file that is a symlink to another run's file.
        let own = Checkpoint.folder(in: run, step: 2).appendingPathComponent(Checkpoint.modelFile)
        try fm.removeItem(at: own)
        try fm.createSymbolicLink(at: own, withDestinationURL: Checkpoint.folder(in: other, step: 2).appendingPathComponent(Checkpoint.modelFile))
        for args in commands {
            let r = try runProcess(longcrawlBinary, args)
            XCTAssertNotEqual(r.status, 0, args[0])
            XCTAssertTrue(r.err.contains("\(own.path): leads outside the checkpoint folder"), "\(args[0]): \(r.err)")
        }
    }
}

/// `train --eval-windows --eval-every`: the held-out loss during training changes nothing of the training.
final class HeldoutDuringTrainingTests: XCTestCase {
    func testHeldoutEvaluationLeavesTrainingUnchangedKeepsTheBestAndResumes() throws {
        let data = try sampleDataset(self)
        let dir = try temporaryFolder(self)
        let windows = dir.appendingPathComponent("heldout.h5").path
        let s = try runProcess(longcrawlBinary, ["sample", data.path, "--split", "heldout", "--count", "2", "--seed", "2", "--context", "64", "--out", windows])
        XCTAssertEqual(s.status, 0, s.err)
        let config = packageRoot.appendingPathComponent("data/configs/tiny.json").path
        func args(_ out: URL, eval: Bool) -> [String] {
            ["train", "--data", data.path, "--config", config, "--context", "64", "--batch", "2", "--steps", "12", "--warmup", "2",
             "--save-every", "4", "--out", out.path] + (eval ? ["--eval-windows", windows, "--eval-every", "3"] : [])
        }
        let plain = dir.appendingPathComponent("plain"), straight = dir.appendingPathComponent("straight"), killed = dir.appendingPathComponent("killed")
        for (run, eval) in [(plain, false), (straight, true)] {
            let r = try runProcess(longcrawlBinary, args(run, eval: eval))
            XCTAssertEqual(r.status, 0, r.err)
        }
        XCTAssertEqual(try losses(straight), try losses(plain), "evaluation must not change the training losses, bit for bit")

        let log = Trainer.heldoutLog(straight)
        XCTAssertEqual(log.map(\.step), [3, 6, 9, 12])
        XCTAssertTrue(log.allSatisfy { $0.loss.se != nil && $0.loss.mean.isFinite })
        XCTAssertEqual(log.map(\.tokens), [3, 6, 9, 12].map { $0 * 2 * 64 })
        let best = try Checkpoint.loadState(Checkpoint.best(in: straight))
        XCTAssertEqual(best.step, log.min { $0.loss.mean < $1.loss.mean }!.step, "best is the lowest logged held-out loss")
        XCTAssertEqual(Checkpoint.all(in: straight).map(\.lastPathComponent), ["step-000004", "step-000008", "step-000012"])

        // SIGKILL after the first checkpoint, resume: the same eval.jsonl and losses as the uninterrupted run.
        let p = try launch(longcrawlBinary, args(killed, eval: true))
        while p.isRunning && Checkpoint.all(in: killed).isEmpty { usleep(500) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertLessThan(try Checkpoint.loadState(Checkpoint.all(in: killed).last!).step, 12, "the kill should land before the run ends")
        let resumed = try runProcess(longcrawlBinary, ["train", "--out", killed.path, "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertEqual(try String(contentsOf: killed.appendingPathComponent("eval.jsonl"), encoding: .utf8),
                       try String(contentsOf: straight.appendingPathComponent("eval.jsonl"), encoding: .utf8))
        XCTAssertEqual(try losses(killed), try losses(plain))
        XCTAssertEqual(try Checkpoint.loadState(Checkpoint.best(in: killed)).step, best.step)

        // Rows shorter than the training context are refused, naming the file.
        let short = dir.appendingPathComponent("short.h5").path
        XCTAssertEqual(try runProcess(longcrawlBinary, ["sample", data.path, "--split", "heldout", "--count", "1", "--context", "32", "--out", short]).status, 0)
        var bad = args(dir.appendingPathComponent("bad"), eval: false)
        bad += ["--eval-windows", short]
        let r = try runProcess(longcrawlBinary, bad)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("\(short): rows of 33 tokens, the training context 64 needs 65"), r.err)
    }
}

/// `longcrawl experiment` end to end at a tiny budget: four variants on the same batches, one report row each,
/// and a resume after a SIGKILL that skips the finished variants. One variant carries its state (`+carry`), so every
/// variant reads the windows in sequential order.
final class ExperimentTests: XCTestCase {
    func testExperimentTrainsVariantsAlikeReportsAndResumes() throws {
        let data = try sampleDataset(self)
        let dir = try temporaryFolder(self)
        let windows = dir.appendingPathComponent("ew.h5").path
        XCTAssertEqual(try runProcess(longcrawlBinary, ["sample", data.path, "--split", "heldout", "--count", "2", "--seed", "0", "--context", "256", "--out", windows]).status, 0)
        let exp = dir.appendingPathComponent("exp")
        let variants = ["softmax", "sympow", "sympow+gating", "conformal-sympow+carry"]
        let refused = try runProcess(longcrawlBinary, ["experiment", "--data", data.path, "--config", packageRoot.appendingPathComponent("data/configs/tiny.json").path, "--context", "64", "--tokens", "1",
                                                       "--eval-windows", windows, "--variants", "softmax+carry", "--out", dir.appendingPathComponent("no").path])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.err.contains("softmax cannot carry its state"), refused.err)
        let args = ["experiment", "--data", data.path, "--config", packageRoot.appendingPathComponent("data/configs/tiny.json").path,
                    "--context", "64", "--batch", "2", "--tokens", String(30 * 2 * 64), "--save-every", "5", "--eval-windows", windows, "--out", exp.path,
                    "--variants", variants.joined(separator: ",")]
        let p = try launch(longcrawlBinary, args)
        // Kill once the second variant has a checkpoint: the first is finished, the second part-way.
        while p.isRunning && Checkpoint.all(in: exp.appendingPathComponent("sympow")).isEmpty { usleep(500) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertFalse(FileManager.default.fileExists(atPath: exp.appendingPathComponent("report.md").path), "the kill should land before the end")
        let again = try runProcess(longcrawlBinary, args)
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.err.contains("already holds an experiment; pass --resume"), again.err)
        let r = try runProcess(longcrawlBinary, ["experiment", "--out", exp.path, "--resume"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("[1/4] softmax: finished, skipped"), r.out)

        // The same window ids at the same offsets in the same order for every variant, all 30 steps.
        let batches = try variants.map { v in
            try String(contentsOf: exp.appendingPathComponent(v).appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
                .map { try JSONDecoder().decode(StepMetrics.self, from: Data($0.utf8)) }
        }
        for (v, b) in zip(variants, batches) {
            XCTAssertEqual(b.map(\.step), Array(1...30), v)
            XCTAssertEqual(b.map { $0.windows! }, batches[0].map { $0.windows! }, v)
            XCTAssertEqual(b.map { $0.offsets! }, batches[0].map { $0.offsets! }, v)
            XCTAssertEqual(b.map { $0.offsets![0] }, (0..<30).map { $0 * 64 }, "\(v): sequential order, segment after segment")
            XCTAssertEqual(b.compactMap(\.offset).count, v.hasSuffix("+carry") ? 30 : 0, "\(v): only the carried run logs its segment's offset")
        }
        let carried = try Checkpoint.loadState(Checkpoint.resolve(exp.appendingPathComponent("conformal-sympow+carry")))
        XCTAssertEqual(carried.options.carries, true)
        // One naming rule (RunConfig.applying): -KIND for another attention than the config's own.
        XCTAssertEqual(carried.config.model.name, "tiny")
        XCTAssertEqual(try Checkpoint.loadState(Checkpoint.resolve(exp.appendingPathComponent("sympow"))).config.model.name, "tiny-sympow")
        let report = try String(contentsOf: exp.appendingPathComponent("report.md"), encoding: .utf8)
        let parts = report.components(separatedBy: "## Recall probe")
        XCTAssertEqual(parts.count, 2, report)
        for part in parts {
            let rows = part.split(separator: "\n").filter { line in variants.contains { line.hasPrefix("| \($0) |") } }
            XCTAssertEqual(rows.count, 4, report)
        }
        XCTAssertTrue(report.contains("independent segments"), report)
        XCTAssertTrue(report.contains("Training order sequential"), report)
        XCTAssertTrue(parts[1].contains("| softmax | 64 | "), "only Δ 64 fits 2 x 64 + Δ into rows of 257 tokens: \(report)")
        // Resumed once more: every variant's evaluation and probe are kept, not run again, and the report is the same.
        let third = try runProcess(longcrawlBinary, ["experiment", "--out", exp.path, "--resume"])
        XCTAssertEqual(third.status, 0, third.err)
        for v in variants {
            XCTAssertTrue(third.out.contains("eval \(v): saved for step-000030, kept") && third.out.contains("probe \(v): saved for step-000030, kept"), third.out)
        }
        XCTAssertEqual(try String(contentsOf: exp.appendingPathComponent("report.md"), encoding: .utf8), report)
        for v in variants {
            let result = try JSONDecoder().decode(EvalResult.self, from: Data(contentsOf: exp.appendingPathComponent("eval/\(v)/result.json")))
            XCTAssertEqual(result.windows, 2)
            XCTAssertEqual(result.summary.trainedContext, 64)
            XCTAssertNotNil(result.summary.extrapolationGap?.se)
            let probe = try JSONDecoder().decode(ProbeResult.self, from: Data(contentsOf: exp.appendingPathComponent("probe/\(v)/probe.json")))
            XCTAssertEqual(probe.distances.map(\.delta), [64], v)
            XCTAssertEqual(probe.skipped, [256, 1024, 4096, 16384, 60000], v)
            XCTAssertEqual(probe.windows, 2, v)
        }
    }
}
