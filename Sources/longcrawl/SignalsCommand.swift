import ArgumentParser
import Foundation
import Preprocess

/// `longcrawl signals`: RedPajama-v2's quality signals of each document, as JSON lines, to compare with RPv2's
/// published `quality_signals/*.signals.json.gz`.
struct SignalsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signals",
        abstract: "Print RedPajama-v2's quality signals of each document of a file, one JSON object a line.",
        discussion: """
        Reads any input preprocess reads (a RedPajama-v2 documents/{snapshot}/{shard}/{lang}_{bucket}.json.gz file is \
        read as RPv2's: raw_content, ids {snapshot}/{shard}/{lang}_{bucket}.json.gz/{row}, every document) and prints, in \
        input order, {"id": ..., "rps_doc_word_count": ..., ...}: the signals the quality rules use, rounded to 8 \
        decimals as RPv2 does, null where RPv2 gives null. rps_lines_start_with_bulletpoint is the share of lines \
        (RPv2 publishes one 0/1 per line). An unreadable record prints {"id": "file:line", "error": ...}.

        Example:
          longcrawl signals 2023-06/0000/en_head.json.gz --text-field raw_content > en_head.ours.jsonl
        """
    )

    @Argument(help: "Input files or folders.")
    var inputs: [String]

    @Option(help: "Field holding the text, as preprocess's --text-field.")
    var textField: String = "raw_content"

    @Option(help: "Field holding the document id (absent: file:line).")
    var idField: String = "id"

    func run() throws {
        let reader = try CorpusReader(inputs: inputs, textField: textField, idField: idField, rpv2Flags: false)
        var out = Data()
        for record in reader {
            let id: String, text: [UInt8]
            switch record {
            case .document(let d): (id, text) = (d.id, d.text)
            case .dropped(let r) where r.reason == .empty: (id, text) = (r.origin, [])
            case .dropped(let r):
                out.append(contentsOf: "{\"id\":\(jsonString(r.origin)),\"error\":\(jsonString(r.detail))}\n".utf8)
                continue
            }
            var line = "{\"id\":\(jsonString(id))"
            for (name, value) in QualitySignals(utf8: text).all() {
                line += ",\"\(name)\":" + (value.map { name == "rps_doc_word_count" ? String(Int($0)) : String($0) } ?? "null")
            }
            line += "}\n"
            out.append(contentsOf: line.utf8)
            if out.count >= 1 << 16 { FileHandle.standardOutput.write(out); out.removeAll(keepingCapacity: true) }
        }
        FileHandle.standardOutput.write(out)
    }
}

/// A JSON string literal.
private func jsonString(_ s: String) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: s, options: [.fragmentsAllowed, .withoutEscapingSlashes]), as: UTF8.self)
}
