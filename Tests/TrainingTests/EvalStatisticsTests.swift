import Foundation
import XCTest
@testable import Training

/// Standard errors and the summary metrics of `eval`, on losses whose answers are known.
final class EvalStatisticsTests: XCTestCase {
    func testStandardErrorIsTheFormulaAndUndefinedForOneWindow() {
        // Windows whose losses are 3 + k * 0.5 at every position: the spread is known exactly.
        let n = 7, positions = 40
        let perWindow = (0..<n).map { k in [Double](repeating: 3 + 0.5 * Double(k), count: positions) }
        let values = (0..<n).map { 3 + 0.5 * Double($0) }
        let mean = values.reduce(0, +) / Double(n)
        let sd = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n - 1)).squareRoot()
        let r = EvalResult(perWindow: perWindow, checkpoint: "-", windowsFile: "-", config: "t", trainedContext: 8, segment: 40, form: "chunked", tokensPerSecond: 1)
        XCTAssertEqual(r.perPosition[17], mean, accuracy: 1e-12)
        XCTAssertEqual(r.perPositionSE![17]!, sd / Double(n).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(r.buckets[3].se!, sd / Double(n).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(r.summary.bestContext!.se!, sd / Double(n).squareRoot(), accuracy: 1e-12)
        // Every window has the same offset between ranges, so the paired gap has no spread at all.
        XCTAssertEqual(r.summary.extrapolationGap!.mean, 0, accuracy: 1e-12)
        XCTAssertEqual(r.summary.extrapolationGap!.se!, 0, accuracy: 1e-12)

        let one = EvalResult(perWindow: [perWindow[2]], checkpoint: "-", windowsFile: "-", config: "t", trainedContext: 8, segment: 40, form: "chunked", tokensPerSecond: 1)
        XCTAssertNil(one.perPositionSE)
        XCTAssertNil(one.buckets[0].se)
        XCTAssertNil(one.summary.bestContext!.se, "one window: undefined, not zero")
        XCTAssertEqual(one.summary.bestContext!.mean, 4)
        let json = String(decoding: try! JSONEncoder().encode(one.summary), as: UTF8.self)
        XCTAssertFalse(json.contains("\"se\":0"), json)
    }

    /// Best-context loss and every range mean against a direct computation over a hand-made curve.
    func testSummaryMetricsEqualADirectComputation() {
        let l = 64, positions = 65_535
        var rng = SystemRandomNumberGenerator()
        let perWindow = (0..<3).map { _ in (0..<positions).map { i in 8 / (1 + log(Double(i + 1))) + Double.random(in: 0..<0.1, using: &rng) } }
        let s = EvalSummary(perWindow: perWindow, trainedContext: l)
        func direct(_ range: Range<Int>) -> Double {
            perWindow.map { w in range.map { w[$0] }.reduce(0, +) / Double(range.count) }.reduce(0, +) / 3
        }
        XCTAssertEqual(s.bestContext!.mean, direct(57..<64), accuracy: 1e-12, "[0.9 L, L) = positions 57 ..< 64 for L = 64 (0.9 L rounded down)")
        XCTAssertEqual(s.ranges.map(\.name), ["(L/2, L]", "(L, 2L]", "(2L, 4L]", "(4L, 16L]", "(16L, 65535]"])
        let expected = [32..<64, 64..<128, 128..<256, 256..<1024, 1024..<65535]
        for (r, e) in zip(s.ranges, expected) {
            XCTAssertEqual(r.start..<r.end, e, r.name)
            XCTAssertEqual(r.loss.mean, direct(e), accuracy: 1e-12, r.name)
        }
        XCTAssertEqual(s.extrapolationGap!.mean, direct(64..<256) - direct(32..<64), accuracy: 1e-12)
        // Rows of L + 1 tokens reach only (L/2, L]; no gap without (L, 4L].
        let short = EvalSummary(perWindow: perWindow.map { Array($0.prefix(l)) }, trainedContext: l)
        XCTAssertEqual(short.ranges.map(\.name), ["(L/2, L]"])
        XCTAssertNil(short.extrapolationGap)
    }
}
