import Foundation
import TestSupport
import XCTest

/// `python3 ARGS` with the package's `python/` on the path (as `pip install ./python[torch]` gives it), from `directory`.
@discardableResult
private func python(_ args: [String], in directory: URL? = nil) throws -> (status: Int32, out: String, err: String) {
    try runProcess("/usr/bin/env", ["PYTHONPATH=" + packageRoot.appendingPathComponent("python").path, "OMP_NUM_THREADS=1", "python3"] + args,
                   directory: directory)
}

/// A loss as a float32 tensor holds it carries 0.5 ulp of rounding; near 10.5 an ulp is 2^-20 = 9.5e-7. Per position
/// the two implementations differ by float32 rounding, at most 6.6e-7 in the cross-check of docs/PYTORCH.md (torch in
/// float64 against `longcrawl eval` in float32), so two float32 means differ by at most 2 x 0.5 ulp + 6.6e-7 + the
/// other side's own rounding (another 6.6e-7): under 3 ulp. A few steps of AdamW move the loss-bearing weights
/// by float32 rounding of the update (6e-8 in the step check), far below one ulp of the loss. Bound: 4 ulp.
private func lossBound(_ loss: Double) -> Double { 4 * Double(Float(loss).ulp) }

/// Per position, torch in float64 against `longcrawl eval` in float32: the measured maxima are 2.6e-7 to 6.6e-7
/// (docs/PYTORCH.md); a loss near 10 is held to 9.5e-7 (2^-20 ulp for [8, 16)) in float32, and eval's per-position mean
/// is a float32 value rounded once more: 2 ulp = 1.9e-6 bounds the two roundings together.
private let evalBound = 2 * Double(Float(10).ulp)

private func metrics(_ run: URL) throws -> [[String: Any]] {
    try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
    }
}

private func windows(_ m: [[String: Any]]) -> [[Int]] { m.map { ($0["windows"] as? [Int] ?? []) + ($0["offsets"] as? [Int] ?? []) } }

final class TorchTests: XCTestCase {
    let tiny = packageRoot.appendingPathComponent("data/configs/tiny.json").path
    let example = packageRoot.appendingPathComponent("python/examples/train_torch.py").path

    override func setUpWithError() throws {
        let r = try python(["-c", "import torch, safetensors, numpy, h5py, hdf5plugin, zstandard, xxhash"])
        try XCTSkipUnless(r.status == 0, "torch or the Python reader's dependencies are missing: \(r.err)")
    }

    private func train(_ args: [String], in directory: URL? = nil) throws {
        let r = try runProcess(longcrawlBinary, ["train", "--config", tiny, "--context", "256"] + args, directory: directory)
        XCTAssertEqual(r.status, 0, r.err)
    }

    private func trainTorch(_ args: [String], ranks: Int = 1, line: UInt = #line) throws {
        let launcher = ranks == 1 ? [] : ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "\(ranks)"]
        let r = try python(launcher + [example, "--config", tiny, "--context", "256", "--threads", "1"] + args)
        XCTAssertEqual(r.status, 0, r.err, line: line)
    }

    /// Every ```python block of README.md and docs/PYTORCH.md runs as written, from a folder holding the sample the
    /// README builds (`tools/demo.sh`'s preprocess into out/sample) and the repository's data/.
    func testDocumentationPythonBlocksRunOnTheSample() throws {
        let root = try temporaryFolder(self)
        let r = try runProcess(longcrawlBinary, ["preprocess", packageRoot.appendingPathComponent("data/sample").path, "--out",
                                                 root.appendingPathComponent("out/sample").path, "--windows-per-doc", "all", "--heldout-fraction", "0.3"])
        XCTAssertEqual(r.status, 0, r.err)
        try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("data"), withDestinationURL: packageRoot.appendingPathComponent("data"))
        var count = 0
        for doc in ["README.md", "docs/PYTORCH.md"] {
            let text = try String(contentsOf: packageRoot.appendingPathComponent(doc), encoding: .utf8)
            for (i, block) in text.components(separatedBy: "```python\n").dropFirst().enumerated() {
                let code = try XCTUnwrap(block.components(separatedBy: "\n```").first)
                let run = try python(["-c", code], in: root)
                XCTAssertEqual(run.status, 0, "\(doc), Python block \(i + 1):\n\(code)\n\(run.err)")
                count += 1
            }
        }
        XCTAssertGreaterThanOrEqual(count, 4)
    }

    /// `longcrawl.model` on a checkpoint of `longcrawl train` gives eval's per-position losses and the next step's
    /// weights (`tools/torch_model.py check`); a checkpoint the example saved is read by `longcrawl eval`, which gives
    /// torch's losses, and by `generate`.
    func testModelAndCheckpointsBothWays() throws {
        let dir = try temporaryFolder(self), data = try sampleDataset(self).path
        let rows = dir.appendingPathComponent("rows.h5").path
        let s = try runProcess(longcrawlBinary, ["sample", data, "--split", "heldout", "--count", "2", "--seed", "1", "--context", "512", "--out", rows])
        XCTAssertEqual(s.status, 0, s.err)
        let swift = dir.appendingPathComponent("swift"), torch = dir.appendingPathComponent("torch")
        try train(["--data", data, "--steps", "2", "--save-every", "1", "--out", swift.path])
        try trainTorch(["--data", data, "--steps", "2", "--out", torch.path])
        for (checkpoint, step) in [(swift.appendingPathComponent("checkpoints/step-000001"), true), (torch.appendingPathComponent("checkpoints/step-000002"), false)] {
            let r = try python([packageRoot.appendingPathComponent("tools/torch_model.py").path, "check", "--checkpoint", checkpoint.path,
                                "--windows", rows, "--longcrawl", longcrawlBinary, "--threads", "1"])
            XCTAssertEqual(r.status, 0, r.err)
            let result = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
            let eval = try XCTUnwrap(result["eval"] as? [String: Any])
            XCTAssertEqual(eval["positions"] as? Int, 512)
            XCTAssertLessThan(try XCTUnwrap(eval["max_abs_diff"] as? Double), evalBound, "\(checkpoint.path): \(eval)")
            if step {
                // One AdamW step in float64 from Swift's step 1 against Swift's step 2. The loss is step 1's forward:
                // evalBound. Weights: float32 rounding of the update, except where a tiny gradient's relative rounding
                // error is magnified by m / sqrt(v) (rare tokens' rows of wte: 1.4e-6 of a 3.1e-3 update in
                // docs/PYTORCH.md); a wrong lr, decay or beta moves every weight by a share of the update itself.
                let next = try XCTUnwrap(result["train_step"] as? [String: Any])
                XCTAssertLessThan(try XCTUnwrap(next["loss_diff"] as? Double), evalBound, "\(next)")
                XCTAssertLessThan(try XCTUnwrap(next["max_weight_diff"] as? Double), 0.01 * (try XCTUnwrap(next["max_update"] as? Double)), "\(next)")
            }
        }
        let g = try runProcess(longcrawlBinary, ["generate", "--checkpoint", torch.path, "--prompt", "It was", "--tokens", "5"])
        XCTAssertEqual(g.status, 0, g.err)
        XCTAssertTrue(g.out.hasPrefix("It was"), g.out)
    }

    /// The example, 5 steps alone and under torchrun on 2 ranks at the same global batch, takes `longcrawl train`'s
    /// windows at every step, with the same losses; killed after step 2 and resumed, it repeats steps 3-5 exactly.
    func testExampleAloneUnderTorchrunAndResumedTakesTrainsWindows() throws {
        let dir = try temporaryFolder(self), data = try sampleDataset(self).path
        let swift = dir.appendingPathComponent("swift"), alone = dir.appendingPathComponent("alone"), ranks = dir.appendingPathComponent("ranks")
        try train(["--data", data, "--steps", "5", "--batch", "4", "--out", swift.path])
        try trainTorch(["--data", data, "--steps", "5", "--batch", "4", "--save-every", "2", "--workers", "2", "--out", alone.path])
        try trainTorch(["--data", data, "--steps", "5", "--batch", "2", "--out", ranks.path], ranks: 2)
        let s = try metrics(swift), a = try metrics(alone), r = try metrics(ranks)
        XCTAssertEqual(a.count, 5)
        XCTAssertEqual(windows(a), windows(s))
        XCTAssertEqual(windows(r), windows(s))
        for (x, y) in zip(a, r) {
            let lx = try XCTUnwrap(x["loss"] as? Double), ly = try XCTUnwrap(y["loss"] as? Double)
            XCTAssertEqual(lx, ly, accuracy: lossBound(lx), "step \(x["step"] ?? 0)")
        }
        let state = try String(contentsOf: ranks.appendingPathComponent("checkpoints/step-000005/state.json"), encoding: .utf8)
        XCTAssertTrue(state.contains("\"rank\": 1") && state.contains("\"world\": 2"), state)
        // Resume from step 2: the later checkpoints go, as after a kill; the steps after it come again, bit for bit.
        for step in ["step-000004", "step-000005"] { try FileManager.default.removeItem(at: alone.appendingPathComponent("checkpoints/" + step)) }
        let r2 = try python([example, "--out", alone.path, "--resume", "--threads", "1"])
        XCTAssertEqual(r2.status, 0, r2.err)
        let resumed = try metrics(alone)
        XCTAssertEqual(resumed.map { $0["step"] as? Int }, [1, 2, 3, 4, 5])
        XCTAssertEqual(resumed.map { $0["loss"] as? Double }, a.map { $0["loss"] as? Double })
        XCTAssertEqual(resumed.map { $0["grad_norm"] as? Double }, a.map { $0["grad_norm"] as? Double })
    }

    /// Started `--init-from` a Swift checkpoint, the example's first 3 steps take `longcrawl train --init-from`'s
    /// windows, learning rates and losses (within float32 rounding, `lossBound`).
    func testExampleFromASwiftCheckpointTakesTrainsFirstSteps() throws {
        let dir = try temporaryFolder(self), data = try sampleDataset(self).path
        let start = dir.appendingPathComponent("start"), swift = dir.appendingPathComponent("swift"), torch = dir.appendingPathComponent("torch")
        try train(["--data", data, "--steps", "2", "--out", start.path])
        let from = start.appendingPathComponent("checkpoints/step-000002").path
        try train(["--data", data, "--steps", "3", "--init-from", from, "--out", swift.path])
        try trainTorch(["--data", data, "--steps", "3", "--init-from", from, "--out", torch.path])
        let s = try metrics(swift), t = try metrics(torch)
        XCTAssertEqual(t.count, 3)
        XCTAssertEqual(windows(t), windows(s))
        for (x, y) in zip(s, t) {
            let lx = try XCTUnwrap(x["loss"] as? Double), ly = try XCTUnwrap(y["loss"] as? Double)
            XCTAssertEqual(lx, ly, accuracy: lossBound(lx), "step \(x["step"] ?? 0)")
            XCTAssertEqual(try XCTUnwrap(x["lr"] as? Double), try XCTUnwrap(y["lr"] as? Double), accuracy: 1e-15)
        }
    }
}
