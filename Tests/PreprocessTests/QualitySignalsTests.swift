import Foundation
@testable import Support
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
            XCTAssertEqual(text.withUnsafeBufferPointer { Double(QualitySignals.wordCount(utf8: $0)) },
                           expected["rps_doc_word_count"] as? Double, "\(name): the word count alone")
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

    /// The word count alone (the word-count rule's fast pass) equals the full analysis' on random texts made of the
    /// pieces that decide it: every whitespace scalar, sequences cut short or starting mid-character, ASCII
    /// punctuation between and inside words, letters, invalid bytes.
    func testWordCountAloneEqualsTheAnalysis() {
        let pieces: [[UInt8]] = [[0x20], [0x0A], [0x09], [0x1C], [0x1F], [0x2E], [0x21], [0x27], [0x2D], [0x61], [0x5A], [0x37], [0x5F],
                                 [0xC2, 0x85], [0xC2, 0xA0], [0xC2], [0xC2, 0x86], [0xE1, 0x9A, 0x80], [0xE1, 0x9A], [0xE2, 0x80, 0x80],
                                 [0xE2, 0x80, 0x8A], [0xE2, 0x80, 0x8B], [0xE2, 0x80, 0xA8], [0xE2, 0x80, 0xA9], [0xE2, 0x80, 0xAF],
                                 [0xE2, 0x81, 0x9F], [0xE2, 0x80], [0xE3, 0x80, 0x80], [0xE3, 0x80], [0xF0, 0xE2, 0x80, 0x80],
                                 [0xC3, 0xA9], [0xCE, 0xA3], [0xE2, 0x80, 0xA6], [0x80], [0xFF], [0xED, 0xA0, 0x80], [0xF0, 0x9F, 0x98, 0x80]]
        var rng = SplitMix64(seed: 7)
        for trial in 0..<3000 {
            let text = (0..<Int(rng.next(below: 40))).flatMap { _ in pieces[Int(rng.next(below: UInt64(pieces.count)))] }
            XCTAssertEqual(text.withUnsafeBufferPointer { QualitySignals.wordCount(utf8: $0) }, QualitySignals(utf8: text).wordCount,
                           "trial \(trial): \(text)")
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
