import Foundation
@testable import Model
@testable import Shards
@testable import Support
import TestSupport
import XCTest
@testable import Streaming
@testable import Training

/// `train --carry-state` and `train --init-from` (issue 22).
final class CarryStateTests: XCTestCase {
    /// The tiny config (chunk 64) at learning rate 0, sequential order, carrying: forward and backward change nothing.
    func frozen(_ kind: AttentionKind, context: Int, batch: Int, steps: Int) throws -> RunConfig {
        var c = try fastConfig(steps: steps)
        c.model.attention = kind; c.train.context = context; c.train.batch = batch
        c.train.learningRate = 0; c.train.minLearningRate = 0
        return c
    }

    func carrying(_ data: URL, accumulation: Int = 1) -> TrainOptions {
        var o = TrainOptions(dataset: data.path)
        o.order = .sequential; o.carryState = true; o.accumulation = accumulation; o.saveEvery = 1000
        return o
    }

    /// At learning rate 0, each step's loss of carried training over K = 4 segments equals the mean over that
    /// segment's positions of `eval --context T` (`Evaluator.losses`, the same forward by construction) and of one
    /// chunked pass over the K T tokens, for each sympow variant, at T = chunk and T = 2 chunk. The one pass
    /// differs from the carried segments by a few Float32 ulps per position (CarriedStateTests:
    /// about 1e-8 relative measured, 1e-6 from the analysis there): bounded by 1e-5 relative.
    func testCarriedTrainingEqualsEvalContextAndOnePass() throws {
        let data = try sampleDataset(self)
        let catalog = try WindowCatalog(directory: data, split: .train)
        let k = 4
        for kind in AttentionKind.allCases where kind != .softmax {
            for t in [64, 128] {
                let run = try temporaryFolder(self).appendingPathComponent("run")
                let trainer = try Trainer(config: try frozen(kind, context: t, batch: 2, steps: k), options: carrying(data), run: run)
                let steps = try trainer.train()
                XCTAssertEqual(steps.map(\.offset), (0..<k).map { $0 * t })
                let model = trainer.model, windows = steps[0].windows!
                var evals: [[Double]] = [], wholes: [[Double]] = []
                for window in windows {
                    let row = try catalog.read(window)[0...(k * t)], all = row.map { Int32($0) }
                    evals.append(Evaluator.losses(model, row: row, segment: t))
                    for a in model.attention { a.form = .chunked }
                    wholes.append(model.forward(tokens: Array(all.dropLast()), targets: Array(all.dropFirst()), mask: [Float](repeating: 1, count: k * t),
                                                batch: 1, length: k * t, training: false).perPosition)
                    for a in model.attention { a.form = nil }
                }
                for (s, m) in steps.enumerated() {
                    XCTAssertEqual(m.windows, windows, "a row continues its window")
                    let want = evals.map { $0[(s * t)..<((s + 1) * t)].reduce(0, +) / Double(t) }.reduce(0, +) / Double(windows.count)
                    XCTAssertEqual(m.loss, want, accuracy: 1e-5 * want, "\(kind) T \(t) step \(s + 1): training vs eval --context")
                }
                let worst = zip(evals.joined(), wholes.joined()).map { abs($0 - $1) / $1 }.max()!
                XCTAssertLessThan(worst, 1e-5, "\(kind) T \(t): eval --context vs one chunked pass, per position")
            }
        }
    }

    /// A row that does not continue starts afresh (bit for bit a fresh state); a forged `continues` (another window
    /// or offset) is an error naming the row; the epoch's wrap resets every row; softmax and the longcrawl order
    /// are refused.
    func testResetsAndForgedContinuation() throws {
        let data = try sampleDataset(self)
        let config = try frozen(.conformalSympow, context: 64, batch: 2, steps: 1)
        let model = Transformer<Float>(config: config.model, seed: 1)
        let carry = SegmentCarry(model, batch: 2)
        func batch(_ windows: [Int], offset: Int, continues: Bool) -> Batch {
            Batch(batchSize: 2, context: 64, epoch: 0, inputs: (0..<128).map { Int32($0 * 31 % 50_000) }, targets: (0..<128).map { Int32($0 * 17 % 50_000) },
                  mask: [Float](repeating: 1, count: 128), rows: windows.map { BatchRow(window: $0, offset: offset) }, continues: continues)
        }
        func losses(_ b: Batch, _ state: RecurrentState<Float>) -> [Double] {
            model.forward(tokens: b.inputs, targets: b.targets, mask: b.mask, batch: 2, length: 64, training: false, state: state).perPosition
        }
        let first = batch([3, 5], offset: 0, continues: false)
        try carry.prepare(first)
        _ = losses(first, carry.state)
        let next = batch([3, 5], offset: 64, continues: true)
        try carry.prepare(next)
        XCTAssertNotEqual(losses(next, carry.state), losses(next, RecurrentState(model, batch: 2)), "the carried state must matter")
        XCTAssertThrowsError(try carry.prepare(batch([3, 6], offset: 128, continues: true))) { error in
            XCTAssertTrue("\(error)".hasPrefix("row 1 (window 6 at 128) is marked as continuing but its last segment was window 5 at 64"), "\(error)")
        }
        XCTAssertThrowsError(try carry.prepare(batch([3, 5], offset: 192, continues: true))) { error in
            XCTAssertTrue("\(error)".hasPrefix("row 0 (window 3 at 192)"), "\(error)")
        }
        let fresh = batch([7, 8], offset: 0, continues: false)
        try carry.prepare(fresh)
        XCTAssertEqual(losses(fresh, carry.state), losses(fresh, RecurrentState(model, batch: 2)))

        // The packer's sequential order at T = 16,384 (4 slots, 5 groups of 2 of the 10 windows): a row continues
        // within its window only; the first batch of the next epoch starts every row afresh.
        let packer = try BatchPacker(catalog: try WindowCatalog(directory: data, split: .train), batchSize: 2, context: 16_384, order: .sequential, seed: 1)
        let wide = SegmentCarry(model, batch: 2)
        let filled = wide.state.states(layer: 0).map { _ in Float(1) }, n = wide.state.positions(layer: 0).count
        for i in 0...packer.batchesPerEpoch {
            let b = try packer.next()
            for l in 0..<wide.state.layers { wide.state.restore(layer: l, states: filled, positions: [Double](repeating: 7, count: n)) }
            try wide.prepare(b)
            XCTAssertEqual(b.continues, i % 4 != 0, "batch \(i)")
            XCTAssertEqual(wide.state.states(layer: 1), b.continues ? filled : RecurrentState(model, batch: 2).states(layer: 1), "batch \(i)")
            if i == packer.batchesPerEpoch { XCTAssertEqual(b.epoch, 1) }
        }

        let run = try temporaryFolder(self).appendingPathComponent("run")
        var longcrawl = carrying(data)
        longcrawl.order = .longcrawl
        XCTAssertThrowsError(try Trainer(config: config, options: longcrawl, run: run)) { XCTAssertTrue("\($0)".contains("--order sequential"), "\($0)") }
        var softmax = config
        softmax.model.attention = .softmax
        XCTAssertThrowsError(try Trainer(config: softmax, options: carrying(data), run: run)) { XCTAssertTrue("\($0)".contains("softmax"), "\($0)") }
    }

    /// --accum 2 with one row per micro-batch (and --recompute) takes the rows of --accum 1 with two, each micro-batch
    /// carrying its own row's state: the same windows and offsets, and at learning rate 0 the same losses up to the GEMMs' row
    /// blocking (one Float32 ulp per dot product, 1e-6 relative) and gradient norms up to the order of the sum over
    /// n = 2 x 64 token rows (gamma_n = n 2^-24 = 7.6e-6 relative; bounded by 10 gamma_n).
    func testAccumulationKeepsEachMicroBatchsRows() throws {
        let data = try sampleDataset(self)
        let dir = try temporaryFolder(self)
        let one = try Trainer(config: try frozen(.sympowGating, context: 64, batch: 2, steps: 3), options: carrying(data), run: dir.appendingPathComponent("one")).train()
        var options = carrying(data, accumulation: 2)
        options.recompute = true
        let two = try Trainer(config: try frozen(.sympowGating, context: 64, batch: 1, steps: 3), options: options, run: dir.appendingPathComponent("two")).train()
        let gamma = Double(2 * 64) * 0x1p-24
        for (a, b) in zip(one, two) {
            XCTAssertEqual(a.windows, b.windows); XCTAssertEqual(a.offsets, b.offsets)
            XCTAssertEqual(a.loss, b.loss, accuracy: 1e-6 * a.loss, "step \(a.step)")
            XCTAssertEqual(a.gradNorm, b.gradNorm, accuracy: 10 * gamma * a.gradNorm, "step \(a.step)")
            print("accum 2 vs 1, step \(a.step): loss \(abs(a.loss - b.loss) / a.loss), grad norm \(abs(a.gradNorm - b.gradNorm) / a.gradNorm)")
        }
    }

    /// SIGKILL in the middle of a window (every checkpoint of 16 steps at T = 64 is), then --resume: every loss is
    /// bit-identical to an uninterrupted run, which needs the carried states of both micro-batches from the
    /// checkpoint. The checkpoint says how large they are: B x accum x layers x heads x D x (d + 1) floats.
    func testResumeInTheMiddleOfAWindowIsBitIdentical() throws {
        let data = try sampleDataset(self)
        let folder = try temporaryFolder(self)
        let args = ["train", "--data", data.path, "--config", packageRoot.appendingPathComponent("data/configs/tiny.json").path, "--context", "64",
                    "--batch", "1", "--accum", "2", "--steps", "16", "--warmup", "3", "--save-every", "4", "--order", "sequential", "--carry-state"]
        let straight = folder.appendingPathComponent("straight"), killed = folder.appendingPathComponent("killed")
        let r = try runProcess(longcrawlBinary, args + ["--out", straight.path])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("carried state: 0.6 MB per rank"), r.out)
        let p = try launch(longcrawlBinary, args + ["--out", killed.path])
        while p.isRunning && Checkpoint.all(in: killed).isEmpty { usleep(1000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let at = try Checkpoint.all(in: killed).last.map { try Checkpoint.loadState($0).step } ?? 0
        XCTAssertLessThan(at, 16, "the kill should land before the run ends")
        let resumed = try runProcess(longcrawlBinary, ["train", "--out", killed.path, "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertEqual(try losses(killed), try losses(straight), "losses after resume from step \(at) differ")
        let state = try Checkpoint.loadState(try Checkpoint.resolve(straight))
        let d = 32, dd = d * (d + 1) / 2
        XCTAssertEqual(state.carryBytes, 2 * 2 * 2 * dd * (d + 1) * 4)
        XCTAssertEqual(state.carries?.map(\.offsets), [[15 * 64], [15 * 64]])
        XCTAssertEqual(state.last?.offset, 15 * 64)
    }

    /// --init-from: a new run from a checkpoint's weights at step 0 with fresh moments; --lr 0 leaves them as they
    /// are; a model of another shape is refused.
    func testInitFrom() throws {
        let data = try sampleDataset(self)
        let dir = try temporaryFolder(self)
        let source = dir.appendingPathComponent("source")
        var options = TrainOptions(dataset: data.path)
        options.saveEvery = 2
        try Trainer(config: try fastConfig(steps: 2), options: options, run: source).train()
        let saved = try SafetensorsFile(contentsOf: Checkpoint.folder(in: source, step: 2).appendingPathComponent(Checkpoint.modelFile))
        options.initFrom = source.path
        let trainer = try Trainer(config: try fastConfig(steps: 2), options: options, run: dir.appendingPathComponent("new"))
        XCTAssertEqual(trainer.completedSteps, 0)
        for p in trainer.model.parameters { XCTAssertEqual(p.value.array, saved[p.name]?.values, p.name) }
        XCTAssertTrue(trainer.optimizer.m.array.allSatisfy { $0 == 0 } && trainer.optimizer.step == 0)
        var other = try fastConfig(steps: 2)
        other.model.dModel = 32
        XCTAssertThrowsError(try Trainer(config: other, options: options, run: dir.appendingPathComponent("other"))) { error in
            XCTAssertTrue("\(error)".contains("--init-from") && "\(error)".contains("differs from the run's"), "\(error)")
        }
        // The command: the source's config, --lr 0, two steps that change no weight; the run records its source.
        let out = dir.appendingPathComponent("cli")
        let r = try runProcess(longcrawlBinary, ["train", "--data", data.path, "--init-from", source.path, "--lr", "0", "--steps", "2", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(try SafetensorsFile(contentsOf: Checkpoint.folder(in: out, step: 2).appendingPathComponent(Checkpoint.modelFile)).tensors, saved.tensors)
        let recorded = try JSONDecoder().decode(TrainOptions.self, from: Data(contentsOf: out.appendingPathComponent("options.json")))
        XCTAssertEqual(recorded.initFrom, Checkpoint.folder(in: source, step: 2).standardizedFileURL.path)
    }
}

/// `--context-schedule` (issue 22 item 4).
final class ContextScheduleTests: XCTestCase {
    func testParseAndPhaseBoundaries() throws {
        XCTAssertEqual(try ContextPhase.parse("256:1000,1024:500"), [ContextPhase(context: 256, steps: 1000), ContextPhase(context: 1024, steps: 500)])
        for bad in ["256", "256:0", "300:5", "256:5,"] where bad != "256:5," { XCTAssertThrowsError(try ContextPhase.parse(bad), bad) }
        XCTAssertEqual(ContextPhase.at(999, in: try ContextPhase.parse("256:1000,1024:500")).index, 0)
        XCTAssertEqual(ContextPhase.at(1000, in: try ContextPhase.parse("256:1000,1024:500")).index, 1)
        // 10 windows, sequential, 2 rows of T = 16,384 (4 batches a window): after one group, 2 windows are used.
        let c = PackerCursor(seed: 1, batchSize: 2, context: 16_384, order: .sequential, nextBatch: 4)
        XCTAssertEqual(ContextPhase.translate(c, windows: 10, context: 8192, rows: 2)?.nextBatch, 8, "group 1 at T 8,192 is batch 8")
        XCTAssertEqual(ContextPhase.translate(c, windows: 10, context: 65_536, rows: 1)?.nextBatch, 2, "window 2 alone is batch 2")
        XCTAssertNil(ContextPhase.translate(c, windows: 10, context: 8192, rows: 4), "2 windows used are not a group of 4")
        var mid = c
        mid.nextBatch = 3
        XCTAssertNil(ContextPhase.translate(mid, windows: 10, context: 8192, rows: 2), "in the middle of a window")
        mid.nextBatch = 20
        XCTAssertEqual(ContextPhase.translate(mid, windows: 10, context: 8192, rows: 4)?.nextBatch, 16, "a new epoch: 2 groups of 4 a epoch, 8 batches each")
        var longcrawl = c
        longcrawl.order = .longcrawl
        XCTAssertNil(ContextPhase.translate(longcrawl, windows: 10, context: 8192, rows: 2), "the longcrawl order ends its windows at the epoch's end")
    }

    /// A micro model (d_model 8, one layer: the tied head over 50,304 tokens is most of its cost) with the state carried,
    /// at learning rate 0: phase 1, T 8,192 with 2 rows, uses 2 windows in 8 steps; phase 2, T 16,384 with 1 row, the
    /// third window in 4 steps (3 windows is the least a change of T can take; about half a minute). The first two
    /// steps of each phase have the fixed-context carried evaluation's losses (`eval --context T`, equal to carried
    /// training at that T: CarryStateTests), within its 1e-5. A T change in the middle of a window and a resume with
    /// another schedule are refused.
    func testScheduleAtLearningRateZeroIsItsFixedContexts() throws {
        let data = try sampleDataset(self)
        let catalog = try WindowCatalog(directory: data, split: .train)
        var config = RunConfig(model: ModelConfig(name: "micro", layers: 1, dModel: 8, heads: 2, power: 2, chunk: 64, attention: .sympowGating),
                               train: TrainingConfig(context: 8192))
        config.train.batch = 2; config.train.steps = 12; config.train.learningRate = 0; config.train.minLearningRate = 0
        var options = TrainOptions(dataset: data.path)
        options.order = .sequential; options.carryState = true; options.saveEvery = 12
        options.contextSchedule = try ContextPhase.parse("8192:8,16384:4")
        let run = try temporaryFolder(self).appendingPathComponent("run")
        var trainer: Trainer? = try Trainer(config: config, options: options, run: run)
        let steps = try trainer!.train()
        let model = trainer!.model
        trainer = nil
        XCTAssertEqual(steps.map(\.context), [Int](repeating: 8192, count: 8) + [Int](repeating: 16_384, count: 4))
        XCTAssertEqual(steps.map(\.phase), [Int](repeating: 1, count: 8) + [Int](repeating: 2, count: 4))
        XCTAssertEqual(steps.map(\.offset), (0..<8).map { $0 * 8192 } + (0..<4).map { $0 * 16_384 })
        let order = epochOrder(count: catalog.count, seed: 1, epoch: 0)
        XCTAssertEqual(steps.map(\.windows), [[Int]](repeating: Array(order[0..<2]), count: 8) + [[Int]](repeating: [order[2]], count: 4))
        for (t, first) in [(8192, 0), (16_384, 8)] {
            let evals = try steps[first].windows!.map { Evaluator.losses(model, row: try catalog.read($0)[0...(2 * t)], segment: t) }
            for (s, m) in zip(0..<2, steps[first...]) {
                let want = evals.map { $0[(s * t)..<((s + 1) * t)].reduce(0, +) / Double(t) }.reduce(0, +) / Double(evals.count)
                XCTAssertEqual(m.loss, want, accuracy: 1e-5 * want, "step \(m.step) at T \(t)")
            }
        }
        var mid = options
        mid.contextSchedule = try ContextPhase.parse("8192:4,16384:8")
        XCTAssertThrowsError(try Trainer(config: config, options: mid, run: run.appendingPathComponent("mid"))) {
            XCTAssertTrue("\($0)".contains("phase 2 (T 16384) would start after step 4 in the middle of a window"), "\($0)")
        }
        var other = options
        other.contextSchedule = [ContextPhase(context: 8192, steps: 12)]
        XCTAssertThrowsError(try Trainer(config: config, options: other, run: run, resume: true)) { XCTAssertTrue("\($0)".contains("cannot resume"), "\($0)") }
    }
}
