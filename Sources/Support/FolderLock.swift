import Foundation

/// One writer per folder: an exclusive `flock(2)` on the hidden file `FOLDER/.lock`, held until `release()` or
/// the end of the process. The kernel drops the lock when its holder dies, however it dies, so a lock file left
/// by a killed run is stale by construction and the next run takes it over; the file only carries the holder's
/// process id for the refusal message. Hidden, so dataset listings and "folder not empty" checks ignore it.
public final class FolderLock {
    public static let fileName = ".lock"
    public let url: URL
    private var fd: Int32

    /// Creates `folder` if needed and locks it, or throws at once (no waiting) naming the process that holds it.
    public init(_ folder: URL) throws {
        url = folder.appendingPathComponent(Self.fileName)
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw FileError(folder, "cannot create folder (\(error.localizedDescription))")
        }
        fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError(url, "cannot open lock file (\(String(cString: strerror(errno))))") }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            let reason = errno
            close(fd)
            guard reason == EWOULDBLOCK else { throw FileError(url, "cannot lock (\(String(cString: strerror(reason))))") }
            let holder = (try? String(contentsOf: url, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            let who = Int32(holder).map { "process \($0)" } ?? "another process"
            throw FileError(folder, "in use by \(who) (lock \(url.path)); wait for it or stop it")
        }
        // The pid of a dead holder may still be there: overwrite it.
        let pid = Data("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    /// Unlocks (the file stays: removing it would race with a process that has just opened it).
    public func release() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
    }

    deinit { release() }
}
