import Foundation
@testable import Model
@testable import Streaming
@testable import Support
import TestSupport
import XCTest
@testable import Training

/// `RunConfig.applying`, the one merge of `train`, `experiment` and `bench train` flags into a config and a run's
/// options: each command's representative flags give the config and options written out here, and a bad override is
/// refused in one line naming the option.
final class RunOverridesTests: XCTestCase {
    let tiny = packageRoot.appendingPathComponent("data/configs/tiny.json")

    /// tiny.json with its train section's context, batch, steps, warmup and learning rates replaced.
    func tinyConfig(name: String = "tiny", attention: String = "conformal-sympow", context: Int, batch: Int, steps: Int, warmup: Int,
                    lr: Double = 3e-3, minLR: Double = 3e-4) throws -> RunConfig {
        try JSONDecoder().decode(RunConfig.self, from: Data("""
            {"model": {"name": "\(name)", "layers": 2, "d_model": 64, "heads": 2, "power": 2, "chunk": 64, "attention": "\(attention)",
                       "mlp_ratio": 4, "embed_norm": true},
             "train": {"context": \(context), "batch": \(batch), "lr": \(lr), "min_lr": \(minLR), "warmup_steps": \(warmup), "steps": \(steps),
                       "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0}}
            """.utf8))
    }

    func options(_ data: String, order: BatchOrder = .longcrawl, accumulation: Int = 1, saveEvery: Int = 100, keep: Int = 3, seed: UInt64 = 1,
                 recompute: Bool = false, evalWindows: String? = nil, evalEvery: Int? = nil, maskSeam: Bool? = nil, carryState: Bool? = nil,
                 initFrom: String? = nil, contextSchedule: [ContextPhase]? = nil) -> TrainOptions {
        var o = TrainOptions(dataset: data)
        (o.order, o.accumulation, o.saveEvery, o.keep, o.seed, o.recompute) = (order, accumulation, saveEvery, keep, seed, recompute)
        (o.evalWindows, o.evalEvery, o.maskSeam, o.carryState, o.initFrom, o.contextSchedule) = (evalWindows, evalEvery, maskSeam, carryState, initFrom, contextSchedule)
        return o
    }

    /// `train --data /d/x/../ds --config tiny.json --attention softmax --context 64 --batch 2 --steps 16 --warmup 3 --lr 0
    /// --accum 2 --order sequential --save-every 4 --keep 2 --seed 7 --eval-windows /w/../ew.h5 --recompute --mask-seam`,
    /// then the same resumed (the run's config and options as the base, the flags again), and a schedule carrying the state.
    func testTrainFlags() throws {
        let file = try RunConfig.load(tiny)
        var o = RunOverrides()
        (o.data, o.attention, o.context, o.batch, o.steps, o.warmup, o.lr) = ("/d/x/../ds", .softmax, 64, 2, 16, 3, 0)
        (o.accum, o.order, o.saveEvery, o.keep, o.seed, o.evalWindows, o.recompute, o.maskSeam) = (2, .sequential, 4, 2, 7, "/w/../ew.h5", true, true)
        let (config, opts) = try file.applying(o, to: TrainOptions(dataset: "/d/x/../ds"))
        // --lr alone lowers the floor to it; --eval-every defaults to --save-every.
        XCTAssertEqual(config, try tinyConfig(name: "tiny-softmax", attention: "softmax", context: 64, batch: 2, steps: 16, warmup: 3, lr: 0, minLR: 0))
        XCTAssertEqual(opts, options("/d/ds", order: .sequential, accumulation: 2, saveEvery: 4, keep: 2, seed: 7, recompute: true,
                                     evalWindows: "/ew.h5", evalEvery: 4, maskSeam: true))
        // A resume applies the flags to what the run saved: nothing changes (the name is not suffixed twice).
        let resumed = try config.applying(o, to: opts)
        XCTAssertEqual(resumed.config, config)
        XCTAssertEqual(resumed.options, opts)

        // --context-schedule 64:6,128:3 --carry-state (the order follows) --lr 1e-3 --min-lr 1e-4 --init-from, and the
        // config's own attention named again: the config's name kept.
        var s = RunOverrides()
        (s.data, s.attention, s.contextSchedule, s.carryState, s.lr, s.minLR, s.initFrom) = ("/ds", .conformalSympow, "64:6,128:3", true, 1e-3, 1e-4, "/r/checkpoints/step-000010/")
        let scheduled = try file.applying(s, to: TrainOptions(dataset: "/ds"))
        XCTAssertEqual(scheduled.config, try tinyConfig(context: 64, batch: 4, steps: 9, warmup: 20, lr: 1e-3, minLR: 1e-4))
        XCTAssertEqual(scheduled.options, options("/ds", order: .sequential, carryState: true, initFrom: "/r/checkpoints/step-000010",
                                                  contextSchedule: [ContextPhase(context: 64, steps: 6), ContextPhase(context: 128, steps: 3)]))
    }

    /// `experiment --config tiny.json --context 64 --batch 2 --tokens 3841 --variants softmax,sympow,conformal-sympow+carry
    /// --save-every 5 --heldout-windows h.h5`: 31 steps (rounded up), warmup a tenth, every variant in sequential order
    /// (one carries), the newest checkpoint kept. The conformal-sympow variant is the config's own model and keeps its
    /// name, as `train --attention conformal-sympow` does (before one rule, experiment named it tiny-conformal-sympow).
    func testExperimentPlanAndVariants() throws {
        var shared = RunOverrides()
        (shared.context, shared.batch, shared.tokens) = (64, 2, 3841)
        let plan = try Experiment.Plan(data: "/ds/", config: RunConfig.load(tiny), shared: shared,
                                       variants: Variant.list("softmax,sympow,conformal-sympow+carry", carryAll: false), seed: 1, saveEvery: 5,
                                       evalWindows: "/e.h5", heldoutWindows: "/h.h5", heldoutEvery: nil)
        XCTAssertEqual(plan.config, try tinyConfig(context: 64, batch: 2, steps: 31, warmup: 3))
        XCTAssertEqual(plan.variants.map(\.name), ["softmax", "sympow", "conformal-sympow+carry"])
        XCTAssertEqual(plan.order, .sequential)
        XCTAssertEqual([plan.steps, plan.saveEvery, plan.heldoutEvery], [31, 5, 3])
        XCTAssertEqual([plan.data, plan.evalWindows, plan.heldoutWindows], ["/ds", "/e.h5", "/h.h5"])
        let runs = try plan.variants.map { try plan.settings(for: $0) }
        XCTAssertEqual(runs.map(\.config), [try tinyConfig(name: "tiny-softmax", attention: "softmax", context: 64, batch: 2, steps: 31, warmup: 3),
                                            try tinyConfig(name: "tiny-sympow", attention: "sympow", context: 64, batch: 2, steps: 31, warmup: 3),
                                            try tinyConfig(context: 64, batch: 2, steps: 31, warmup: 3)])
        let plain = options("/ds", order: .sequential, saveEvery: 5, keep: 1, evalWindows: "/h.h5", evalEvery: 3)
        var carried = plain
        carried.carryState = true
        XCTAssertEqual(runs.map(\.options), [plain, plain, carried])
        // An experiment of an earlier version: kinds alone, no order.
        XCTAssertEqual(try JSONDecoder().decode([Variant].self, from: Data(#"["sympow", "sympow+gating+carry"]"#.utf8)),
                       [Variant(attention: .sympow), Variant(attention: .sympowGating, carries: true)])
        XCTAssertEqual(try Variant.list("sympow,sympow+gating", carryAll: true).map(\.name), ["sympow+carry", "sympow+gating+carry"])
    }

    /// `bench train --config tiny.json --context 4096 --steps 8 --carry-state`: 9 steps (one warm-up), no checkpoint,
    /// sequential order; `--compare-carry`'s two variants run in folders named as an experiment's.
    func testBenchTrainFlags() throws {
        var o = RunOverrides()
        (o.context, o.steps, o.saveEvery, o.carryState) = (4096, 9, Int.max, true)
        let (config, opts) = try RunConfig.load(tiny).applying(o, to: TrainOptions(dataset: "out/dev"))
        XCTAssertEqual(config, try tinyConfig(context: 4096, batch: 4, steps: 9, warmup: 20))
        XCTAssertEqual(opts, options("out/dev", order: .sequential, saveEvery: Int.max, carryState: true))
        var sequential = RunOverrides()
        sequential.order = .sequential
        let compared = try [false, true].map { Variant(attention: .conformalSympow, carries: $0) }.map { v in
            (v.name, try config.applying(v.overrides(sequential), to: TrainOptions(dataset: "out/dev")).options.carries)
        }
        XCTAssertEqual(compared.map(\.0), ["conformal-sympow", "conformal-sympow+carry"])
        XCTAssertEqual(compared.map(\.1), [false, true])
    }

    /// Each bad override: one line naming the option and the value.
    func testBadOverridesAreNamed() throws {
        let file = try RunConfig.load(tiny)
        let cases: [(String, (inout RunOverrides) -> Void)] = [
            ("--context: context 1000 does not divide 65536", { $0.context = 1000 }),
            ("--context 32 is not a multiple of the chunk 64 of config 'tiny'", { $0.context = 32 }),
            ("--context and --context-schedule exclude each other", { $0.context = 64; $0.contextSchedule = "64:2" }),
            ("--steps and --context-schedule exclude each other", { $0.steps = 3; $0.contextSchedule = "64:2" }),
            ("--tokens sets the steps; it excludes --steps", { $0.tokens = 100; $0.steps = 3 }),
            ("--context-schedule: '64' is not T:STEPS", { $0.contextSchedule = "64" }),
            ("--batch must be positive, got 0", { $0.batch = 0 }),
            ("--steps must be positive, got -1", { $0.steps = -1 }),
            ("--tokens must be positive, got 0", { $0.tokens = 0 }),
            ("--warmup must be zero or more, got -2", { $0.warmup = -2 }),
            ("--lr must be a finite number not negative, got -0.001", { $0.lr = -1e-3 }),
            ("--min-lr must be a finite number not negative, got nan", { $0.minLR = .nan }),
            ("--accum must be positive, got 0", { $0.accum = 0 }),
            ("--save-every must be positive, got 0", { $0.saveEvery = 0 }),
            ("--keep must be positive, got 0", { $0.keep = 0 }),
            ("--eval-every must be positive, got 0", { $0.evalWindows = "/h.h5"; $0.evalEvery = 0 }),
            ("--carry-state needs --order sequential", { $0.carryState = true; $0.order = .longcrawl }),
            ("--carry-state: softmax has no state of fixed size", { $0.carryState = true; $0.attention = .softmax }),
        ]
        for (message, change) in cases {
            var o = RunOverrides()
            change(&o)
            XCTAssertThrowsError(try file.applying(o, to: TrainOptions(dataset: "/ds")), message) { error in
                XCTAssertTrue("\(error)".hasPrefix(message), "\(error)")
                XCTAssertFalse("\(error)".contains("\n"), "\(error)")
            }
        }
        for (list, message) in [("softmax+carry", "--variants: softmax cannot carry its state"), ("sympow,sympow", "--variants must name each variant once"),
                                ("", "--variants must name each variant once"), ("sympow,gated", "--variants: unknown variant 'gated'")] {
            XCTAssertThrowsError(try Variant.list(list, carryAll: false)) { XCTAssertTrue("\($0)".hasPrefix(message), "\($0)") }
        }
        XCTAssertThrowsError(try Variant.list("softmax,sympow", carryAll: true)) { XCTAssertTrue("\($0)".contains("softmax cannot carry"), "\($0)") }
    }
}
