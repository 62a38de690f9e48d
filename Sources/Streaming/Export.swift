import Foundation
import Support

/// Token files for other trainers, each written from one split's windows in index order, one window at a time.
public enum ExportFormat: String, CaseIterable, Sendable {
    /// nanoGPT's `train.bin` / `val.bin`: one flat little-endian `uint16` file; each window is followed by
    /// end-of-text, as nanoGPT's data/openwebtext/prepare.py appends it after each document.
    case nanogpt
    /// llm.c's token shards (dev/data/data_common.py `write_datafile`): a header of 256 little-endian `int32`
    /// (magic 20240520, version 1, token count), then the tokens as `uint16`; each window is preceded by
    /// end-of-text, as llm.c's dev/data/fineweb.py delimits documents. Shards are filled to exactly
    /// `shardTokens` (a window may straddle two, as in fineweb.py), named `NAME_SPLIT_000000.bin`, ...
    case llmc
}

/// What an export wrote.
public struct ExportSummary: Sendable {
    public var files: [URL]
    public var windows: Int
    /// Tokens written, separators included.
    public var tokens: Int
}

/// Writes `catalog`'s windows as `format` to `out` (the file for nanoGPT, the folder for llm.c, whose shards are
/// named `name_SPLIT_NNNNNN.bin` with heldout as `val`). Every file is written under a hidden temporary name and
/// renamed only once all are complete; existing outputs are refused unless `force`, and then replaced (llm.c
/// shards of an earlier, longer export are removed, since llm.c reads every file its pattern matches).
public func exportTokens(_ catalog: WindowCatalog, format: ExportFormat, out: URL, name: String = "longcrawl",
                         shardTokens: Int = 100_000_000, force: Bool = false, progress: ProgressReporter? = nil) throws -> ExportSummary {
    let record = windowLength + 1
    let total = catalog.count * record
    let files: [URL], stale: [URL]
    switch format {
    case .nanogpt:
        if FileManager.default.fileExists(atPath: out.path), !force { throw FileError(out, "exists (pass --force to replace it)") }
        files = [out]; stale = []
    case .llmc:
        guard shardTokens >= 1, shardTokens < 1 << 31 else {
            throw LongCrawlError("shard size \(shardTokens) tokens: llm.c's header holds an int32 count, so 1 ... \((1 << 31) - 1)")
        }
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let prefix = "\(name)_\(catalog.split == .heldout ? "val" : catalog.split.rawValue)_"
        let shards = (total + shardTokens - 1) / shardTokens
        files = (0..<shards).map { out.appendingPathComponent(prefix + String(format: "%06d", $0) + ".bin") }
        let existing = try FileManager.default.contentsOfDirectory(atPath: out.path)
            .filter { $0.hasPrefix(prefix) && $0.hasSuffix(".bin") }.sorted().map { out.appendingPathComponent($0) }
        if let first = existing.first, !force { throw FileError(first, "exists (pass --force to replace this export)") }
        stale = existing.filter { !files.contains($0) }
    }
    let temporary = files.map(AtomicFile.temporaryURL(for:))
    // One file open at a time (a full LongCrawl64 export is thousands of llm.c shards); all are renamed at the end.
    var open: (shard: Int, handle: FileHandle)?
    func close() throws {
        guard let (shard, h) = open else { return }
        open = nil
        do { try h.synchronize(); try h.close() } catch { throw FileError(files[shard], "write failed (\(error.localizedDescription))") }
    }
    func handle(_ shard: Int) throws -> FileHandle {
        if let open, open.shard == shard { return open.handle }
        try close()
        let tmp = temporary[shard]
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil), let h = FileHandle(forWritingAtPath: tmp.path) else {
            throw FileError(tmp, "cannot create")
        }
        open = (shard, h)
        if format == .llmc {
            var header = [Int32](repeating: 0, count: 256)
            header[0] = 20_240_520; header[1] = 1; header[2] = Int32(min(shardTokens, total - shard * shardTokens))
            try write(header.map(\.littleEndian), to: h, files[shard])
        }
        return h
    }
    do {
        var window = [UInt16](repeating: 0, count: windowLength)
        var written = 0
        progress?.begin(totalBytes: total)
        let started = Date()
        for id in 0..<catalog.count {
            try window.withUnsafeMutableBufferPointer { try catalog.read(id, into: $0) }
            let tokens = format == .nanogpt ? window + [GPT2.endOfText] : [GPT2.endOfText] + window
            // llm.c's shards are cut at exactly shardTokens, inside a window if need be.
            var done = 0
            while done < record {
                let shard = format == .llmc ? written / shardTokens : 0
                let n = format == .llmc ? min((shard + 1) * shardTokens - written, record - done) : record
                try write(tokens[done..<(done + n)].map(\.littleEndian), to: handle(shard), files[shard])
                done += n; written += n
            }
            if let progress, progress.due() {
                let elapsed = Date().timeIntervalSince(started), left = Double(catalog.count - id - 1) / Double(id + 1)
                progress.show(String(format: "%5.1f%% %d/%d windows, %.1fM tokens, ETA ", 100 * Double(id + 1) / Double(catalog.count),
                                     id + 1, catalog.count, Double(written) / 1e6) + ProgressReporter.duration(elapsed * left))
            }
        }
        progress?.end()
        try close()
        for (tmp, url) in zip(temporary, files) { try AtomicFile.commit(tmp, to: url) }
        for url in stale { try FileManager.default.removeItem(at: url) }
        return ExportSummary(files: files, windows: catalog.count, tokens: written)
    } catch {
        progress?.end()
        try? open?.handle.close()
        for tmp in temporary { unlink(tmp.path) }
        throw error
    }
}

/// Appends `values`' bytes; a failed write (full disk) names the final file.
private func write<T>(_ values: [T], to handle: FileHandle, _ url: URL) throws {
    do { try handle.write(contentsOf: values.withUnsafeBytes { Data($0) }) } catch {
        throw FileError(url, "write failed (\(error.localizedDescription)); nothing was renamed into place")
    }
}
