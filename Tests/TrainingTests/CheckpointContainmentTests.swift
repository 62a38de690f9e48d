import Foundation
@testable import Model
@testable import Shards
@testable import Streaming
@testable import Support
import TestSupport
import XCTest
@testable import Training

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
