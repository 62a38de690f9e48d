import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest

/// One writer per folder: `preprocess`, `import` and `train` into a folder another process holds are refused with
/// one line naming that process; the lock of a SIGKILLed holder is taken over.
final class LockTests: XCTestCase {
    func testSecondWriterIsRefusedNamingTheHolder() throws {
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: longcrawlBinary), "no longcrawl binary at \(longcrawlBinary)")
        let dir = try temporaryFolder(self).appendingPathComponent("out")
        let held = try FolderLock(dir)
        let tiny = packageRoot.appendingPathComponent("data/configs/tiny.json").path
        for args in [["preprocess", packageRoot.appendingPathComponent("data/sample").path, "--out", dir.path],
                     ["import", dir.appendingPathComponent("train.zarr").path, "--out", dir.path],
                     ["train", "--data", dir.path, "--config", tiny, "--out", dir.path]] {
            let r = try runProcess(longcrawlBinary, args)
            XCTAssertEqual(r.status, 1, args[0])
            XCTAssertEqual(r.err, "Error: \(dir.path): in use by process \(getpid()) (lock \(held.url.path)); wait for it or stop it\n", args[0])
        }
        XCTAssertThrowsError(try FolderLock(dir), "a second lock in the same process is refused too (flock is per open file)")
        held.release()
        XCTAssertNoThrow(try FolderLock(dir))
    }

    func testLockOfAKilledHolderIsTakenOver() throws {
        let dir = try temporaryFolder(self)
        let lockFile = dir.appendingPathComponent(FolderLock.fileName)
        // Another process takes the same flock(2) lock, writes its pid as ours does, and is SIGKILLed while holding it.
        let hold = "import fcntl, os, sys, time; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); f.write(f'{os.getpid()}\\n'); f.flush(); time.sleep(60)"
        let holder = try launch("/usr/bin/python3", ["-c", hold, lockFile.path])
        while (try? String(contentsOf: lockFile, encoding: .utf8)) != "\(holder.processIdentifier)\n" { usleep(1000) }
        XCTAssertThrowsError(try FolderLock(dir)) { XCTAssertTrue("\($0)".contains("in use by process \(holder.processIdentifier) "), "\($0)") }
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        let lock = try FolderLock(dir)
        XCTAssertEqual(try String(contentsOf: lockFile, encoding: .utf8), "\(getpid())\n")
        lock.release()
    }
}
