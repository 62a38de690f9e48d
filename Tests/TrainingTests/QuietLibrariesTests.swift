import Foundation
@testable import Model
@testable import Shards
@testable import Streaming
@testable import Support
import TestSupport
import XCTest
@testable import Training

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
