import Foundation
@testable import Model
@testable import Shards
@testable import Streaming
@testable import Support
import TestSupport
import XCTest
@testable import Training

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
