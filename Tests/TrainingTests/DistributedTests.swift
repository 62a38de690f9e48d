import Foundation
import Shards
import TestSupport
import XCTest
@testable import Training

/// Data-parallel training over MPI, on loopback: `mpirun --allow-run-as-root --oversubscribe -np 2`.
final class DistributedTests: XCTestCase {
    let mpirun = "/usr/bin/mpirun"

    func mpi(_ ranks: Int, _ args: [String]) -> [String] {
        ["--allow-run-as-root", "--oversubscribe", "-np", String(ranks), longcrawlBinary] + args
    }

    func trainArgs(_ data: URL, batch: Int, steps: Int, saveEvery: Int, out: URL) -> [String] {
        ["train", "--data", data.path, "--config", packageRoot.appendingPathComponent("data/configs/tiny.json").path, "--context", "64",
         "--batch", String(batch), "--steps", String(steps), "--warmup", "2", "--save-every", String(saveEvery), "--out", out.path]
    }

    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: mpirun), "Open MPI's mpirun is not installed")
    }

    /// 2 ranks x batch 2 follow 1 rank x batch 4: the same windows (rank r takes every other entry of the epoch
    /// order), gradients averaged; only the order of float sums differs. Tolerance: every parameter within 1e-5
    /// after 5 steps (measured about 2e-6), losses within 1e-8 relative.
    func testTwoRanksFollowOneRankWithTwiceTheBatch() throws {
        let data = try sampleDataset(self)
        let dir = try temporaryFolder(self)
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        let a = try runProcess(longcrawlBinary, trainArgs(data, batch: 4, steps: 5, saveEvery: 5, out: one))
        XCTAssertEqual(a.status, 0, a.err)
        let b = try runProcess(mpirun, mpi(2, trainArgs(data, batch: 2, steps: 5, saveEvery: 5, out: two)))
        XCTAssertEqual(b.status, 0, b.err)
        XCTAssertTrue(b.out.contains("on 2 ranks"), b.out)
        let ma = try SafetensorsFile(contentsOf: Checkpoint.folder(in: one, step: 5).appendingPathComponent(Checkpoint.modelFile))
        let mb = try SafetensorsFile(contentsOf: Checkpoint.folder(in: two, step: 5).appendingPathComponent(Checkpoint.modelFile))
        XCTAssertEqual(ma.tensors.map(\.name), mb.tensors.map(\.name))
        for (x, y) in zip(ma.tensors, mb.tensors) {
            let worst = zip(x.values, y.values).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 1e-5, x.name)
        }
        XCTAssertNotEqual(ma, mb, "summation order differs, so bit equality would mean one run did not use MPI")
        for (x, y) in zip(try losses(one), try losses(two)) { XCTAssertEqual(x, y, accuracy: 1e-8 * x) }
        let state = try Checkpoint.loadState(Checkpoint.folder(in: two, step: 5))
        XCTAssertEqual(state.cursors.map(\.rank), [0, 1])
        XCTAssertEqual(state.cursors.map(\.world), [2, 2])
    }

    /// SIGKILL every process of a 2-rank run after a checkpoint, resume with 2 ranks: the same losses as an
    /// uninterrupted 2-rank run. Resuming with 1 rank is refused with the reason.
    func testResumeAfterKillWithTwoRanks() throws {
        let data = try sampleDataset(self)
        let dir = try temporaryFolder(self)
        let straight = dir.appendingPathComponent("straight"), killed = dir.appendingPathComponent("killed")
        let r = try runProcess(mpirun, mpi(2, trainArgs(data, batch: 2, steps: 12, saveEvery: 4, out: straight)))
        XCTAssertEqual(r.status, 0, r.err)
        let p = try launch(mpirun, mpi(2, trainArgs(data, batch: 2, steps: 12, saveEvery: 4, out: killed)))
        while p.isRunning && Checkpoint.all(in: killed).isEmpty { usleep(1000) }
        // The whole job at once, as a machine that loses power: mpirun and both ranks (their command lines hold the path).
        _ = try runProcess("/usr/bin/pkill", ["-KILL", "-f", killed.path])
        p.waitUntilExit()
        let at = try Checkpoint.all(in: killed).last.map { try Checkpoint.loadState($0).step } ?? 0
        XCTAssertLessThan(at, 12, "the kill should land before the run ends")
        let alone = try runProcess(longcrawlBinary, ["train", "--out", killed.path, "--resume"])
        XCTAssertNotEqual(alone.status, 0)
        XCTAssertTrue(alone.err.contains("written by 2 rank(s), resumed with 1: resume with mpirun -np 2"), alone.err)
        let resumed = try runProcess(mpirun, mpi(2, ["train", "--out", killed.path, "--resume"]))
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertEqual(try losses(killed), try losses(straight), "losses after resuming from step \(at)")
    }

    /// A rank that dies takes the job down within a bounded time, with a message naming it; no rank hangs.
    func testDeadRankEndsTheJob() throws {
        let data = try sampleDataset(self)
        let run = try temporaryFolder(self).appendingPathComponent("run")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        p.arguments = mpi(2, trainArgs(data, batch: 2, steps: 100_000, saveEvery: 2, out: run))
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Checkpoint.all(in: run).isEmpty && Date() < deadline { usleep(1000) }
        // Rank 1: the child of mpirun whose environment says so.
        let children = try runProcess("/usr/bin/pgrep", ["-P", String(p.processIdentifier)]).out.split(separator: "\n").compactMap { Int32($0) }
        let rank1 = children.first { pid in
            let env = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))) ?? Data()
            return env.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == "OMPI_COMM_WORLD_RANK=1" }
        }
        guard let rank1 else { return XCTFail("no rank 1 among mpirun's children \(children)") }
        let killedAt = Date()
        kill(rank1, SIGKILL)
        let message = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertLessThan(Date().timeIntervalSince(killedAt), 30, "the job should end soon after a rank dies")
        XCTAssertNotEqual(p.terminationStatus, 0)
        let text = String(decoding: message, as: UTF8.self)
        XCTAssertTrue(text.contains("rank 1") && text.contains("signal 9"), text)
    }
}
