import Foundation

/// This process's scratch folder: the parsers take files, so every input is written to one. In /dev/shm when
/// there is one, so a write costs no disk I/O.
public let scratch: URL = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    var template = Array("\(base)/longcrawl-fuzz-XXXXXX".utf8CString)
    guard let dir = mkdtemp(&template) else { fatalError("cannot create a scratch folder in \(base)") }
    let url = URL(fileURLWithPath: String(cString: dir))
    // A scratch folder per process, removed at exit (libFuzzer exits through exit(), which runs atexit handlers).
    atexit { try? FileManager.default.removeItem(at: scratchForCleanup!) }
    scratchForCleanup = url
    return url
}()

nonisolated(unsafe) private var scratchForCleanup: URL?

/// Writes `bytes` to `scratch/name` (creating its folder) and returns the file's URL.
@discardableResult
public func writeInput(_ bytes: UnsafeRawBufferPointer, to name: String) -> URL {
    let url = scratch.appendingPathComponent(name)
    try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot write \(url.path)")
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        precondition(n > 0, "short write to \(url.path)")
        done += n
    }
    close(fd)
    return url
}

/// The input as a buffer (libFuzzer passes a pointer and a count).
public func input(_ start: UnsafeRawPointer, _ count: Int) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: count > 0 ? start : nil, count: count)
}
