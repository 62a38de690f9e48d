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

    /// The shard a path names, or nil if the path does not have RPv2's shape.
    init?(_ url: URL) {
        let parts = url.standardizedFileURL.pathComponents
        guard parts.count >= 5, parts[parts.count - 4] == "documents", let file = parts.last, file.hasSuffix(".json.gz") else { return nil }
        let stem = file.dropLast(".json.gz".count)
        guard let us = stem.lastIndex(of: "_"), us > stem.startIndex, ["head", "middle", "tail"].contains(stem[stem.index(after: us)...]) else { return nil }
        tag = parts.suffix(3).dropLast().joined(separator: "/") + "/" + stem
        let root = URL(fileURLWithPath: NSString.path(withComponents: Array(parts.prefix(parts.count - 4))))
        let dup = root.appendingPathComponent("duplicates").appendingPathComponent(tag + ".duplicates.parquet")
        duplicates = FileManager.default.fileExists(atPath: dup.path) ? dup : nil
    }

    /// The id of the document on 1-based line `line`.
    func id(line: Int) -> String { "\(tag).json.gz/\(line - 1)" }

    /// The flagged ids of the duplicates file (none without one).
    func flagged() throws -> Set<String> {
        guard let duplicates else { return [] }
        let reader = try ParquetReader(url: duplicates, textColumn: "doc_id", idColumn: nil)
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
