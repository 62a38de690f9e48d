import Foundation
import TestSupport
import XCTest
@testable import Preprocess

/// RedPajama-v2's quality signals against RPv2's own code: Fixtures/rpv2-signals.json holds texts (edge cases,
/// excerpts of data/sample, whole books by path) and the values RPv2's signal classes gave them (Python 3.11).
final class QualitySignalsTests: XCTestCase {
    /// Every signal of every fixture document equals RPv2's within 1e-8, nulls included.
    func testSignalsEqualRPv2() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/rpv2-signals.json")
        let fixture = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let documents = try XCTUnwrap(fixture["documents"] as? [[String: Any]])
        XCTAssertGreaterThan(documents.count, 30)
        for document in documents {
            let name = document["name"] as! String
            let text: [UInt8]
            if let path = document["path"] as? String {
                text = [UInt8](try Data(contentsOf: packageRoot.appendingPathComponent(path)))
            } else {
                text = Array((document["text"] as! String).utf8)
            }
            let expected = document["signals"] as! [String: Any]
            let ours = QualitySignals(utf8: text).all()
            XCTAssertEqual(Set(ours.map(\.name)), Set(expected.keys), name)
            for (signal, value) in ours {
                let want = expected[signal] as? Double
                if let want, let value {
                    XCTAssertEqual(value, want, accuracy: 1e-8, "\(name): \(signal)")
                } else {
                    XCTAssertTrue(value == nil && want == nil, "\(name): \(signal) is \(value as Any), RPv2 \(want as Any)")
                }
            }
        }
    }

    /// Python's `round(x, 8)`: halves of the last digit go to the nearest binary value's side, as CPython's dtoa.
    func testRoundingIsPythons() {
        XCTAssertEqual(roundPython(2.0 / 3.0), 0.66666667)
        XCTAssertEqual(roundPython(1.0 / 3.0), 0.33333333)
        XCTAssertEqual(roundPython(0.123456785), 0.12345678) // the double below ...785
        XCTAssertEqual(roundPython(0), 0)
    }
}
