import Foundation
@testable import Model
@testable import Shards
@testable import Support
import TestSupport
import XCTest
@testable import Training

/// Damaged checkpoints and evaluation files, and a full disk at a checkpoint: one-line errors naming the file,
/// never a wrong tensor loaded or a NaN loss.
final class BadInputTests: XCTestCase {
    /// A two-step run checkpointed at steps 1 and 2 (CLI, so the same files `train` writes).
    private func smallRun(_ data: URL, steps: Int = 2) throws -> URL {
        let run = try temporaryFolder(self).appendingPathComponent("run")
        let r = try runProcess(longcrawlBinary, ["train", "--data", data.path, "--config", packageRoot.appendingPathComponent("data/configs/tiny.json").path,
                                                 "--context", "64", "--batch", "2", "--steps", String(steps), "--save-every", "1", "--out", run.path])
        XCTAssertEqual(r.status, 0, r.err)
        return run
    }

    /// A shard replaced by one that crashes libhdf5 (index.json unchanged): `sample`, `pack` and `train` refuse it by its
    /// size and SHA-256 in index.json before libhdf5 parses it, in one line naming it (they ended with a segmentation
    /// fault, exit 139). A damaged shard of the right size: StreamingTests.testCorruptWindowAndMissingShardAreNamed.
    func testShardThatCrashesLibhdf5IsRefusedByItsHash() throws {
        let data = try temporaryFolder(self).appendingPathComponent("ds")
        let p = try runProcess(longcrawlBinary, ["preprocess", packageRoot.appendingPathComponent("data/sample").path, "--out", data.path,
                                                 "--windows-per-doc", "all", "--shard-windows", "2"])
        XCTAssertEqual(p.status, 0, p.err)
        let index = try DatasetIndex.load(from: data)
        let first = try XCTUnwrap(index.shards.first { $0.split == .train })
        XCTAssertEqual(first.format, .hdf5)
        let shard = data.appendingPathComponent(first.file)
        try FileManager.default.removeItem(at: shard)
        try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("Fuzz/Known/FuzzHDF5Shard/fletcher32-segv.h5"), to: shard)
        // Every train window in one batch or sample, so the damaged shard is opened.
        let windows = String(index.windows(split: .train))
        let config = packageRoot.appendingPathComponent("data/configs/tiny.json").path
        for args in [["sample", data.path, "--split", "train", "--count", windows, "--context", "64", "--out", data.appendingPathComponent("s.h5").path],
                     ["pack", data.path, "--batch", windows, "--context", "64"],
                     ["train", "--data", data.path, "--config", config, "--context", "64", "--batch", windows, "--steps", "1",
                      "--out", data.appendingPathComponent("run").path]] {
            let r = try runProcess(longcrawlBinary, args)
            XCTAssertEqual(r.status, 1, "\(args[0]): \(r.err)")
            XCTAssertEqual(r.err, "Error: \(shard.path): size 12240 bytes, index.json says \(first.bytes) (the file is damaged or replaced)\n", args[0])
        }
    }

    func testDamagedCheckpointIsRefusedNamingTheFile() throws {
        let data = try sampleDataset(self)
        let run = try smallRun(data)
        let ckpt = try XCTUnwrap(Checkpoint.all(in: run).last)
        let modelURL = ckpt.appendingPathComponent(Checkpoint.modelFile), stateURL = ckpt.appendingPathComponent(Checkpoint.stateFile)
        let original = try Data(contentsOf: modelURL), state = try Data(contentsOf: stateURL)
        let model = Transformer<Float>(config: try Checkpoint.loadState(ckpt).config.model, seed: 0)

        // safetensors has no checksum: a flipped byte in a tensor is caught by the SHA-256 in state.json.
        var flipped = original
        flipped[flipped.count - 5] ^= 0x01
        try flipped.write(to: modelURL)
        XCTAssertThrowsError(try Checkpoint.loadModel(ckpt, into: model)) { XCTAssertEqual("\($0)", "\(modelURL.path): SHA-256 differs from the one in state.json (the file is damaged)") }

        // A value changed in state.json is caught by its own digest; whitespace is harmless.
        try Data(String(decoding: state, as: UTF8.self).replacingOccurrences(of: "\"step\" : 2", with: "\"step\" : 3").utf8).write(to: stateURL)
        XCTAssertThrowsError(try Checkpoint.loadState(ckpt)) { XCTAssertTrue("\($0)".hasPrefix("\(stateURL.path): checksum mismatch"), "\($0)") }
        try Data(String(decoding: state, as: UTF8.self).replacingOccurrences(of: "\n", with: "\n ").utf8).write(to: stateURL)
        XCTAssertNoThrow(try Checkpoint.loadState(ckpt))

        // A NaN written with a matching checksum (as a buggy producer would): eval, generate and --resume name the tensor.
        var file = try SafetensorsFile(contentsOf: { try original.write(to: modelURL); return modelURL }())
        let k = try XCTUnwrap(file.tensors.firstIndex { $0.name == "ln_f.weight" })
        file.tensors[k].values[3] = .nan
        try file.write(to: modelURL)
        var s = try JSONDecoder().decode(TrainState.self, from: state)
        s.files?[Checkpoint.modelFile] = try sha256(of: modelURL).hex
        s.sha256 = try s.digest()
        try AtomicFile.writeJSON(s, to: stateURL)
        let windows = run.appendingPathComponent("eval.h5")
        XCTAssertEqual(try runProcess(longcrawlBinary, ["sample", data.path, "--count", "1", "--context", "64", "--out", windows.path]).status, 0)
        for args in [["eval", "--checkpoint", run.path, "--windows", windows.path, "--out", run.appendingPathComponent("result").path],
                     ["generate", "--checkpoint", run.path, "--prompt", "It was", "--tokens", "4"],
                     ["train", "--out", run.path, "--resume"]] {
            let r = try runProcess(longcrawlBinary, args)
            XCTAssertEqual(r.status, 1, args[0])
            XCTAssertEqual(r.err, "Error: \(modelURL.path): tensor ln_f.weight holds nan at element 3\n", args[0])
        }
    }

    func testEvalWindowsOfAnotherLengthAreNamed() throws {
        let data = try sampleDataset(self)
        let run = try smallRun(data, steps: 1)
        let windows = run.appendingPathComponent("eval.h5")
        let bad = try runProcess(longcrawlBinary, ["sample", data.path, "--count", "1", "--context", "1000", "--out", windows.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.err.contains("context 1000 does not divide 65536"), bad.err)
        XCTAssertEqual(try runProcess(longcrawlBinary, ["sample", data.path, "--count", "1", "--context", "64", "--out", windows.path]).status, 0)
        let r = try runProcess(longcrawlBinary, ["eval", "--checkpoint", run.path, "--windows", windows.path, "--context", "128", "--out", run.appendingPathComponent("result").path])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.err, "Error: \(windows.path): rows of 65 tokens (64 inputs) do not split into segments of --context 128\n")
    }

    /// The disk fills during a checkpoint (a file size cap, as the writer sees it): one line naming the file, the
    /// previous checkpoint intact, and a resume once there is room gives the losses of an uninterrupted run.
    func testFullDiskAtACheckpointKeepsThePreviousOne() throws {
        let data = try sampleDataset(self)
        let args = ["train", "--data", data.path, "--config", packageRoot.appendingPathComponent("data/configs/tiny.json").path,
                    "--context", "64", "--batch", "2", "--steps", "4", "--save-every", "2"]
        let straight = try temporaryFolder(self).appendingPathComponent("straight")
        XCTAssertEqual(try runProcess(longcrawlBinary, args + ["--out", straight.path]).status, 0)
        // The same run as if it had stopped after its step-2 checkpoint.
        let run = try temporaryFolder(self).appendingPathComponent("run")
        try FileManager.default.copyItem(at: straight, to: run)
        try FileManager.default.removeItem(at: Checkpoint.folder(in: run, step: 4))
        // The moments file (25.8 MB for tiny) does not fit under 16 MB; SIGXFSZ ignored, so write(2) fails with EFBIG.
        let capped = "trap '' XFSZ; ulimit -f 16000; exec \"$0\" \"$@\""
        let full = try runProcess("/bin/bash", ["-c", capped, longcrawlBinary, "train", "--out", run.path, "--resume"])
        XCTAssertEqual(full.status, 1)
        XCTAssertEqual(full.err.split(separator: "\n").filter { !$0.hasPrefix("train step") }.count, 1, full.err)
        XCTAssertTrue(full.err.contains("checkpoints/.step-000004.tmp/optimizer.safetensors: write failed (File too large)"), full.err)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path), ["step-000002"],
                       "the failed save leaves no partial folder holding space")
        let model = Transformer<Float>(config: try Checkpoint.loadState(Checkpoint.all(in: run)[0]).config.model, seed: 0)
        XCTAssertNoThrow(try Checkpoint.loadModel(Checkpoint.all(in: run)[0], into: model))
        let resumed = try runProcess(longcrawlBinary, ["train", "--out", run.path, "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertEqual(try losses(run), try losses(straight))
    }
}
