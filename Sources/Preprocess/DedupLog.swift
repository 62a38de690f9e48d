import Foundation
import Support

/// A single run's dedup state on disk, so `--resume` rebuilds exactly the index it had: `.dedup-survivors` (hidden,
/// removed when the build completes) holds every kept document's id and fingerprint in input order, appended as
/// each is kept; `duplicates.jsonl` a line per dropped duplicate. The resume point's counters say how many of each
/// precede it (`kept`, `dropped_duplicate`): a resumed run reads that many survivors back and cuts both files there.
final class DedupLog {
    static let survivorsName = ".dedup-survivors", duplicatesName = "duplicates.jsonl"
    let dedup: Deduplicator
    private let survivors: FileHandle, duplicates: FileHandle
    private let survivorsURL: URL

    /// Opens (creating) both files in `folder` and restores the first `kept` survivors and `dropped` duplicate lines.
    init(folder: URL, settings: DedupSettings, kept: Int, dropped: Int) throws {
        let index = Deduplicator(settings), survivorsURL = folder.appendingPathComponent(Self.survivorsName)
        self.survivorsURL = survivorsURL
        dedup = index
        let duplicatesURL = folder.appendingPathComponent(Self.duplicatesName)
        for url in [survivorsURL, duplicatesURL] where !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else { throw FileError(url, "cannot create") }
        }
        // Survivors: id length (u32), id, fingerprint length (u32), fingerprint (u64 each), little-endian.
        let log = kept == 0 ? [] : try readWholeFile(survivorsURL)
        var at = 0
        func u32() throws -> Int {
            guard at + 4 <= log.count else { throw FileError(survivorsURL, "ends inside survivor \(index.count) of the \(kept) the resume point needs") }
            defer { at += 4 }
            return (0..<4).reduce(0) { $0 | Int(log[at + $1]) << (8 * $1) }
        }
        for _ in 0..<kept {
            let idBytes = try u32()
            guard at + idBytes <= log.count else { throw FileError(survivorsURL, "ends inside survivor \(index.count)") }
            let id = String(decoding: log[at..<at + idBytes], as: UTF8.self)
            at += idBytes
            let words = try u32()
            guard at + 8 * words <= log.count else { throw FileError(survivorsURL, "ends inside survivor \(index.count)") }
            let fingerprint = (0..<words).map { w in (0..<8).reduce(UInt64(0)) { $0 | UInt64(log[at + 8 * w + $1]) << (8 * $1) } }
            at += 8 * words
            index.add(id: id, fingerprint: fingerprint)
        }
        survivors = try FileHandle(forUpdating: survivorsURL)
        try survivors.truncate(atOffset: UInt64(at))
        try survivors.seekToEnd()

        var cut = 0
        if dropped > 0 {
            let lines = try readWholeFile(duplicatesURL)
            var seen = 0
            while seen < dropped, let nl = lines[cut...].firstIndex(of: 0x0A) { cut = nl + 1; seen += 1 }
            guard seen == dropped else { throw FileError(duplicatesURL, "holds \(seen) lines, the resume point needs \(dropped)") }
        }
        duplicates = try FileHandle(forUpdating: duplicatesURL)
        try duplicates.truncate(atOffset: UInt64(cut))
        try duplicates.seekToEnd()
    }

    /// Nil when the document is kept (and logged), else the kept document it duplicates (and the line is written).
    func check(id: String, fingerprint: [UInt64]) throws -> (kept: String, jaccard: Double)? {
        if let hit = dedup.check(id: id, fingerprint: fingerprint) {
            try duplicates.write(contentsOf: duplicateLine(kept: hit.kept, dropped: id, jaccard: hit.jaccard))
            return hit
        }
        var entry: [UInt8] = []
        func u32(_ v: Int) { for k in 0..<4 { entry.append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
        u32(id.utf8.count); entry += id.utf8
        u32(fingerprint.count)
        for w in fingerprint { for k in 0..<8 { entry.append(UInt8(truncatingIfNeeded: w >> (8 * k))) } }
        try survivors.write(contentsOf: entry)
        return nil
    }

    /// Both files on disk: called before each commit of the index, whose resume point counts their entries (a
    /// power loss after the commit must not leave the log shorter than the resume point says).
    func synchronize() throws {
        try survivors.synchronize(); try duplicates.synchronize()
    }

    /// The build is complete: the survivors are no longer needed.
    func finish() throws {
        try duplicates.synchronize()
        try duplicates.close(); try survivors.close()
        try? FileManager.default.removeItem(at: survivorsURL)
    }
}
