import Foundation
import XCTest
@testable import Model

/// A new attention kind is a case of `AttentionKind` and its answers to the capability properties: Swift's enums
/// cannot gain a case in a test target, so this checks the other half, that no decision elsewhere names a kind, by
/// grepping `Sources/` against the places docs/ARCHITECTURE.md lists.
final class AttentionKindTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The Swift files that name a kind (`.softmax`, `.sympow`, ...) are exactly the Swift places of the
    /// ARCHITECTURE list, and every place listed exists.
    func testOnlyTheListedPlacesNameAKind() throws {
        let doc = try String(contentsOf: Self.root.appendingPathComponent("docs/ARCHITECTURE.md"), encoding: .utf8)
        let section = try XCTUnwrap(doc.components(separatedBy: "## A new attention kind").dropFirst().first?.components(separatedBy: "\n## ").first)
        let listed = section.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("- `"), let end = line.dropFirst(3).firstIndex(of: "`") else { return nil }
            return String(line.dropFirst(3)[..<end])
        }
        XCTAssertFalse(listed.isEmpty, "the section lists its places")
        for path in listed { XCTAssertTrue(FileManager.default.fileExists(atPath: Self.root.appendingPathComponent(path).path), "\(path) exists") }
        let names = AttentionKind.allCases.map { "\($0)" }
        let pattern = try NSRegularExpression(pattern: "\\.(\(names.joined(separator: "|")))\\b")
        var naming: [String] = []
        let sources = Self.root.appendingPathComponent("Sources")
        for case let url as URL in FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)! where url.pathExtension == "swift" {
            let text = try String(contentsOf: url, encoding: .utf8)
            if pattern.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil {
                naming.append("Sources/" + url.path.dropFirst(sources.path.count + 1))
            }
        }
        XCTAssertEqual(Set(naming), Set(listed.filter { $0.hasPrefix("Sources/") }), "files that decide by a kind's name")
    }

    /// The properties agree with the code that runs: a kind has the chunked form exactly when it carries a state,
    /// and otherwise every length runs in the quadratic form.
    func testCapabilitiesMatchTheForms() {
        for kind in AttentionKind.allCases {
            let layer = SympowAttention<Float>(dModel: 16, heads: 2, power: 2, chunk: 4, kind: kind)
            XCTAssertEqual(layer.chunked != nil, kind.carriesState, "\(kind)")
            let long = AttentionForm.choose(kind: kind, headDimension: 8, power: 2, chunk: 4, length: 4096)
            XCTAssertEqual(long, kind.carriesState ? .chunked : .quadratic, "\(kind)")
            XCTAssertEqual(kind.score(power: 2) == .softmax, !kind.carriesState, "\(kind)")
        }
    }
}
