import CLongCrawl
import Foundation
import Support

// HTTP(S) inputs are read with libcurl (http.c) pulled by the reader, not URLSession: FoundationNetworking's
// delegate pushes bytes as fast as they come (no backpressure, so memory grows with a slow tokenizer) and its
// suspend/resume is unreliable on Linux. Pulled from a multi handle, the transfer runs only while the reader asks,
// memory holds one read's bytes, and a Range request after a dropped connection is just another open.

/// How HTTP(S) inputs are fetched: how often to try again, how long to wait, how many connections a process (a rank)
/// keeps open. Does not change the output.
public struct HTTPSettings: Sendable {
    /// Attempts per stretch of a file without progress (a response that brings bytes starts the count again).
    public var attempts = 6
    /// Seconds before the first retry, doubling each time up to `maxBackoff`; a 429 or 503's Retry-After wins.
    public var backoff = 1.0
    public var maxBackoff = 60.0
    /// Seconds without a byte, while the reader waits, before the connection is dropped and tried again.
    public var stallSeconds = 60.0
    public var connectSeconds = 30.0
    public var maxRedirects = 5
    /// Connections open at once in this process (`--connections`); reading threads wait for one.
    public var connections = 8 {
        didSet { limiter = ConnectionLimiter(connections) }
    }
    /// Shared by every copy of these settings: the bound is the process's, not a reader's.
    var limiter = ConnectionLimiter(8)

    public init() {}
}

/// A counting semaphore over open connections.
/// Sendable by hand: `open` is touched only under `condition`.
final class ConnectionLimiter: @unchecked Sendable {
    let limit: Int
    private var open = 0
    private let condition = NSCondition()

    init(_ limit: Int) { self.limit = max(limit, 1) }

    func acquire() {
        condition.lock()
        while open >= limit { condition.wait() }
        open += 1
        condition.unlock()
    }

    func release() {
        condition.lock()
        open -= 1
        condition.signal()
        condition.unlock()
    }
}

/// Why a URL could not be read: a `FileError`-shaped line naming it. `missing` for 404 and 410, which
/// `--skip-missing` skips; every other failure stops the run (a transport failure is never a short file).
struct HTTPError: Error, CustomStringConvertible {
    let url: URL
    let message: String
    var missing = false
    var description: String { "\(url.location): \(message)" }
}

/// An HTTP(S) body read forward, resumed by `Range: bytes=N-` after a dropped connection, a stall, a 5xx or a 429;
/// every answer checked: a resume's Content-Range must start at the byte asked and name the same size, the bytes
/// must add up to Content-Length, and a server that ignores Range (200) has the bytes already read skipped again.
/// Holds one of the process's connections (`HTTPSettings.connections`) from open to deinit.
final class HTTPSource: ByteSource {
    let url: URL
    private let settings: HTTPSettings
    private var handle: OpaquePointer?
    /// Bytes handed to the reader; the file's size once a response has told it.
    private var offset = 0
    private var total: Int?
    /// Bytes of the current response to drop first (a 200 answer to a resume).
    private var skip = 0
    private var failures = 0
    private var acquired = false

    init(_ url: URL, _ settings: HTTPSettings) throws {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw HTTPError(url: url, message: "unsupported scheme '\(url.scheme ?? "")': inputs are local paths or http(s) URLs")
        }
        guard url.host?.isEmpty == false else { throw HTTPError(url: url, message: "URL has no host") }
        self.url = url
        self.settings = settings
        settings.limiter.acquire()
        acquired = true
    }

    deinit {
        if let handle { lc_http_close(handle) }
        if acquired { settings.limiter.release() }
    }

    func read(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
        while true {
            if handle == nil, try !connect() { continue }
            let n = lc_http_read(handle, buffer.assumingMemoryBound(to: UInt8.self), count, stallMilliseconds)
            if n > 0 {
                let dropped = min(skip, n)
                skip -= dropped
                // Only new bytes are progress: an answer that repeats what was read and drops again must run out of attempts.
                guard n > dropped else { continue }
                if dropped > 0 { memmove(buffer, buffer + dropped, n - dropped) }
                failures = 0
                offset += n - dropped
                try checkSize()
                return n - dropped
            }
            if n == 0 {
                if skip > 0 { throw HTTPError(url: url, message: "a later answer ended before byte \(offset), where an earlier one had reached") }
                // Without a stated size (chunked), the end the server marks is the end.
                guard let total, offset < total else { return 0 }
                try retry("connection closed at byte \(offset) of \(total)")
            } else if n == -2 {
                try retry("no data for \(Int(settings.stallSeconds)) s at byte \(offset)")
            } else {
                try retry("transfer failed at byte \(offset) (\(String(cString: lc_http_error(handle))))")
            }
        }
    }

    private var stallMilliseconds: Int32 { Int32(min(settings.stallSeconds * 1000, 1e9)) }

    private func checkSize() throws {
        if let total, offset > total { throw HTTPError(url: url, message: "more bytes than its Content-Length (\(total))") }
    }

    /// Opens a request for the bytes from `offset` on and checks its answer: true when the body can be read, false
    /// after a failure worth another try (already waited for).
    private func connect() throws -> Bool {
        guard let h = lc_http_open(url.absoluteString, Int64(offset), settings.maxRedirects, Int(settings.connectSeconds * 1000)) else {
            throw HTTPError(url: url, message: "out of memory opening a connection")
        }
        handle = h
        switch lc_http_wait_headers(h, stallMilliseconds) {
        case 1: try retry("no response for \(Int(settings.stallSeconds)) s"); return false
        case -1:
            let code = lc_http_result(h), why = String(cString: lc_http_error(h))
            // Bad URLs, refused redirects and TLS verification failures will not change by trying again.
            if [1, 3, 47, 51, 58, 60, 77].contains(code) { throw HTTPError(url: url, message: why) }
            try retry(why)
            return false
        default: break
        }
        let status = lc_http_status(h)
        let length = lc_http_content_length(h)
        switch status {
        case 200:
            try agree(size: length >= 0 ? Int(length) : nil)
            skip = offset
        case 206 where offset > 0:
            // bytes FIRST-LAST/SIZE, FIRST the byte asked.
            let range = String(cString: lc_http_content_range(h))
            let parts = range.split(whereSeparator: { $0 == " " || $0 == "-" || $0 == "/" })
            guard parts.count == 4, parts[0] == "bytes", Int(parts[1]) == offset, let last = Int(parts[2]) else {
                throw HTTPError(url: url, message: "asked for the bytes from \(offset) on, answered with Content-Range '\(range)'")
            }
            try agree(size: parts[3] == "*" ? nil : Int(parts[3]))
            if let total, last != total - 1 { throw HTTPError(url: url, message: "asked for the bytes from \(offset) on, answered with Content-Range '\(range)'") }
        case 404, 410:
            throw HTTPError(url: url, message: "not found (HTTP \(status))", missing: true)
        case 408, 425, 429, 500, 502, 503, 504:
            let wait = lc_http_retry_after(h)
            try retry("HTTP \(status)", wait: wait >= 0 ? Double(wait) : nil)
            return false
        default:
            throw HTTPError(url: url, message: "HTTP \(status)\(status == 206 ? " to a request without Range" : "")")
        }
        return true
    }

    /// Takes the size a response states, which must be the one an earlier response stated.
    private func agree(size: Int?) throws {
        guard let size else { return }
        if let total, total != size { throw HTTPError(url: url, message: "its size changed while it was read (\(total) bytes, then \(size))") }
        total = size
    }

    /// Drops the connection and waits before the next attempt, or throws once the attempts are spent.
    private func retry(_ why: String, wait: Double? = nil) throws {
        if let handle { lc_http_close(handle) }
        handle = nil
        skip = 0
        failures += 1
        guard failures < settings.attempts else {
            throw HTTPError(url: url, message: "\(why); gave up after \(settings.attempts) attempts")
        }
        let backoff = min(settings.backoff * pow(2, Double(failures - 1)), settings.maxBackoff)
        Thread.sleep(forTimeInterval: min(wait ?? backoff, settings.maxBackoff))
    }
}

/// The whole body of a small remote file (RedPajama-v2's duplicates parquet) in an anonymous memory file, for a
/// reader that needs random access; at most `limit` bytes.
func fetchIntoMemory(_ url: URL, http: HTTPSettings, limit: Int = 1 << 30) throws -> Int32 {
    let source = try HTTPSource(url, http)
    let fd = lc_memfd("longcrawl-fetch")
    guard fd >= 0 else { throw HTTPError(url: url, message: "cannot create a memory file (\(String(cString: strerror(errno))))") }
    var block = [UInt8](repeating: 0, count: 1 << 20), done = 0
    do {
        while true {
            let n = try block.withUnsafeMutableBytes { try source.read($0.baseAddress!, $0.count) }
            if n == 0 { return fd }
            done += n
            guard done <= limit else { throw HTTPError(url: url, message: "larger than \(limit) bytes") }
            guard block.withUnsafeBytes({ write(fd, $0.baseAddress!, n) }) == n else {
                throw HTTPError(url: url, message: "cannot hold it in memory (\(String(cString: strerror(errno))))")
            }
        }
    } catch {
        close(fd)
        throw error
    }
}
