import Foundation
@testable import Model
@testable import Shards
@testable import Streaming
@testable import Support
import TestSupport
import XCTest
@testable import Training

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

        let log = RunFolder.heldoutLog(straight)
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
