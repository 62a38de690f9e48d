import CLongCrawl
import Foundation

/// Whole-file writes that never leave a partial file under the final name.
public enum AtomicFile {
    /// The temporary name a file is written under before its rename: hidden, same folder (same file system).
    public static func temporaryURL(for url: URL) -> URL {
        url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".tmp")
    }

    /// Writes `value` as pretty-printed JSON with sorted keys and a final newline, atomically.
    public static func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var data = try encoder.encode(value)
        data.append(0x0A)
        try write(data, to: url)
    }

    /// Writes `data` to a temporary file beside `url`, flushes it to disk, then renames it over `url`.
    public static func write(_ data: Data, to url: URL) throws {
        let tmp = temporaryURL(for: url)
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw FileError(tmp, "cannot create (\(String(cString: strerror(errno))))") }
        var failure: String?
        data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 { if errno == EINTR { continue }; failure = String(cString: strerror(errno)); return }
                done += n
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        if let failure {
            unlink(tmp.path)
            throw FileError(url, "write failed (\(failure)); the previous file is unchanged")
        }
        try commit(tmp, to: url)
    }

    /// Puts the finished folder (or file) `tmp` in the place of `url`, which holds a complete one: the two names are
    /// swapped in one step, so `url` holds the old or the new at every instant; the old, now under `tmp`, is then
    /// removed (a kill before that leaves it there, for the next write to remove). Where the file system cannot
    /// swap, the old is renamed aside first: `url` is then missing for the instant between two renames.
    public static func replace(_ url: URL, with tmp: URL) throws {
        if lc_rename_exchange(tmp.path, url.path) != 0 {
            guard errno == EINVAL || errno == ENOSYS else { throw FileError(url, "cannot swap in \(tmp.lastPathComponent) (\(String(cString: strerror(errno))))") }
            let aside = url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".old")
            try? FileManager.default.removeItem(at: aside)
            guard rename(url.path, aside.path) == 0, rename(tmp.path, url.path) == 0 else {
                throw FileError(url, "cannot rename \(tmp.lastPathComponent) into place (\(String(cString: strerror(errno))))")
            }
            try? FileManager.default.removeItem(at: aside)
            return
        }
        try afterSwap?()
        try? FileManager.default.removeItem(at: tmp)
    }

    /// Called by `replace` between the swap and the old's removal; a test throws from it to stop there as a kill would.
    /// Unchecked: only tests set it, before the call they stop, on the thread that makes it.
    nonisolated(unsafe) static var afterSwap: (() throws -> Void)?

    /// Renames a finished temporary file over its final name.
    public static func commit(_ tmp: URL, to url: URL) throws {
        guard rename(tmp.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp.path)
            throw FileError(url, "cannot rename from \(tmp.lastPathComponent) (\(reason))")
        }
    }
}

/// SHA-256 over bytes given in parts (OpenSSL's EVP), the one digest of files, checkpoints and batches.
public final class SHA256 {
    /// OpenSSL set up once, without its exit handler, and the digest fetched once. A packer thread can open (and so
    /// hash) a shard while the main thread hashes a checkpoint or the process exits: OpenSSL's atexit cleanup freed
    /// its tables under such a thread (a heap corruption seen once at the end of `train`), and `EVP_sha256()` makes
    /// every init look the digest up again in OpenSSL's shared method store. Unchecked: a fetched EVP_MD is
    /// read-only and OpenSSL lets any thread use it.
    nonisolated(unsafe) private static let digest: OpaquePointer = {
        OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
        return EVP_MD_fetch(nil, "SHA256", nil)!
    }()
    private let ctx = EVP_MD_CTX_new()

    public init() { EVP_DigestInit_ex(ctx, Self.digest, nil) }
    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ bytes: UnsafeRawBufferPointer) { if bytes.count > 0 { _ = EVP_DigestUpdate(ctx, bytes.baseAddress!, bytes.count) } }

    /// The digest of everything given so far, in lowercase hex (the context is spent).
    public func hex() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        EVP_DigestFinal_ex(ctx, &digest, nil)
        return digest.map { String(format: "%02x", $0) }.joined()
    }
}

/// Size and hex SHA-256 of a file, read in 1 MiB blocks.
public func sha256(of url: URL) throws -> (bytes: Int, hex: String) {
    let fd = open(url.path, O_RDONLY)
    guard fd >= 0 else { throw FileError(url, "cannot open (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    let digest = SHA256()
    var block = [UInt8](repeating: 0, count: 1 << 20)
    var total = 0
    while true {
        let n = block.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n < 0 { if errno == EINTR { continue }; throw FileError(url, "read failed at byte \(total) (\(String(cString: strerror(errno))))") }
        if n == 0 { break }
        block.withUnsafeBytes { digest.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        total += n
    }
    return (total, digest.hex())
}

/// Hex SHA-256 of `data`.
public func sha256(_ data: Data) -> String {
    let digest = SHA256()
    data.withUnsafeBytes { digest.update($0) }
    return digest.hex()
}

extension JSONEncoder {
    /// Keys sorted: the same bytes for the same values (digests, one JSON line per record).
    public static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}

/// Lets worker closures write disjoint slots of one buffer. Sendable by hand: each worker writes its own slots, and
/// the owner reads them only after every worker has finished.
public struct SendablePointer<T>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<T>
    public init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}

/// `folder/name` when `name` is a relative path that stays inside `folder`, symlinks resolved; nil when it is
/// absolute, has a `..` component, or resolves outside (so a file that names other files cannot reach past its folder).
public func contained(_ name: String, in folder: URL) -> URL? {
    guard !name.isEmpty, !name.hasPrefix("/"), !name.split(separator: "/").contains("..") else { return nil }
    let url = folder.appendingPathComponent(name)
    guard let root = realPath(folder.path) else { return nil }
    // A file not created yet: its folder must resolve inside.
    let resolved = realPath(url.path) ?? realPath(url.deletingLastPathComponent().path).map { $0 + "/" + url.lastPathComponent }
    guard let resolved, resolved.hasPrefix(root == "/" ? "/" : root + "/") else { return nil }
    return url
}

private func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}
