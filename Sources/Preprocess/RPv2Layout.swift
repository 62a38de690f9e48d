import Foundation
import Support

/// One RedPajama-v2 documents file, told from its path: `ROOT/documents/{snapshot}/{shard}/{lang}_{bucket}.json.gz`
/// (CCNet records; the text in `raw_content`). Its documents' ids are RPv2's, `{tag}.json.gz/{row}` with row the
/// 0-based line, and `ROOT/duplicates/{tag}.duplicates.parquet`, when it exists, lists (column `doc_id`) the
/// documents RPv2's Bloom filter flagged, dropped as `dropped_duplicate_rpv2`. A missing duplicates file means none
/// flagged; `preprocess` reports it.
struct RPv2Shard: Sendable {
    /// `{snapshot}/{shard}/{lang}_{bucket}`.
    var tag: String
    var duplicates: URL?

    static let textField = "raw_content"

    /// The shard a path or URL names, or nil if its path does not have RPv2's shape. A URL's duplicates file is the
    /// URL beside it in RPv2's layout (`BASE/duplicates/...`), whether or not it exists: that is found out when its
    /// documents are read.
    init?(_ url: URL) {
        let parts = url.isFileURL ? url.standardizedFileURL.pathComponents : url.pathComponents
        guard parts.count >= 5, parts[parts.count - 4] == "documents", let file = parts.last, file.hasSuffix(".json.gz") else { return nil }
        let stem = file.dropLast(".json.gz".count)
        guard let us = stem.lastIndex(of: "_"), us > stem.startIndex, ["head", "middle", "tail"].contains(stem[stem.index(after: us)...]) else { return nil }
        tag = parts.suffix(3).dropLast().joined(separator: "/") + "/" + stem
        var dup = url.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for component in ["duplicates"] + parts.suffix(3).dropLast() + [stem + ".duplicates.parquet"] { dup.appendPathComponent(component) }
        duplicates = !url.isFileURL || FileManager.default.fileExists(atPath: dup.path) ? dup : nil
    }

    /// The id of the document on 1-based line `line`.
    func id(line: Int) -> String { "\(tag).json.gz/\(line - 1)" }

    /// The flagged ids of the duplicates file (none without one). A URL's is fetched into memory (these files are
    /// small); a missing one throws `HTTPError` with `missing` set.
    func flagged(http: HTTPSettings) throws -> Set<String> {
        guard let duplicates else { return [] }
        let reader: ParquetReader
        if duplicates.isFileURL {
            reader = try ParquetReader(url: duplicates, textColumn: "doc_id", idColumn: nil)
        } else {
            reader = try ParquetReader(url: duplicates, descriptor: try fetchIntoMemory(duplicates, http: http), textColumn: "doc_id", idColumn: nil)
        }
        var out = Set<String>()
        for g in 0..<reader.rowGroupCount {
            for row in try reader.readRowGroup(g) { if let id = row.text { out.insert(String(decoding: id, as: UTF8.self)) } }
        }
        return out
    }

    /// Whether `folder` is an RPv2 download's root (it holds `documents/`): only `documents/` is read from it.
    static func isRoot(_ folder: URL) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: folder.appendingPathComponent("documents").path, isDirectory: &isDir) && isDir.boolValue
    }
}

extension DropReason {
    /// A document RPv2's duplicates file flags.
    public static let duplicateRPv2 = DropReason("duplicate_rpv2")
}
