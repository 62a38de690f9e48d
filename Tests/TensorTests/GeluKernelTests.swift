import XCTest
@testable import Tensor

/// The vectorized GELU kernels (Float) against the Float64 formula with libm's tanh, in every lane and the tail.
final class GeluKernelTests: XCTestCase {
    func testGeluAndItsSlopeMatchTheFloat64Formula() {
        var rng = SystemRandomNumberGenerator()
        for n in [1, 7, 8, 9, 100_003] {
            var x = (0..<n).map { _ in Float.random(in: -12...12, using: &rng) }
            x[0] = 0
            if n > 3 { x[1] = 1e-6; x[2] = -3e-4; x[3] = 5.5 }
            var a = [Float](repeating: .nan, count: n), aBack = a, slope = [Float](repeating: 1, count: n)
            Float.gelu(x, &a, n)
            Float.geluBackward(x, &aBack, &slope, n)
            let xd = x.map(Double.init)
            var want = [Double](repeating: 0, count: n), wantSlope = [Double](repeating: 1, count: n)
            Double.geluBackward(xd, &want, &wantSlope, n)
            for i in 0..<n {
                // Absolute error of a few 1e-8 in tanh, scaled by x in the value and by about x^3 in the slope.
                let scale = 1 + abs(xd[i])
                XCTAssertEqual(Double(a[i]), want[i], accuracy: 3e-7 * scale, "gelu(\(x[i]))")
                XCTAssertEqual(Double(slope[i]), wantSlope[i], accuracy: 3e-7 * scale * scale * scale, "gelu'(\(x[i]))")
                XCTAssertEqual(aBack[i], a[i], "backward rebuilds the forward's value")
            }
            // The finite-difference slope of the Float64 formula confirms the reference derivative itself.
            for i in stride(from: 0, to: n, by: max(1, n / 50)) {
                let h = 1e-5
                var lo = [0.0], hi = [0.0]
                Double.gelu([xd[i] - h], &lo, 1); Double.gelu([xd[i] + h], &hi, 1)
                XCTAssertEqual(wantSlope[i], (hi[0] - lo[0]) / (2 * h), accuracy: 1e-7 * (1 + xd[i] * xd[i]))
            }
        }
    }

    func testEveryPositionGivesTheSameValueAndNaNStaysNaN() {
        // Lane 0 and the scalar tail (index 8) hold the same input: one value whichever path computes it.
        let x: [Float] = [-1.7, 0.3, 2, -4, 0.01, 7, -0.5, 3.3, -1.7, .nan]
        var a = [Float](repeating: 0, count: x.count), slope = [Float](repeating: 1, count: x.count)
        Float.geluBackward(x, &a, &slope, x.count)
        XCTAssertEqual(a[8], a[0]); XCTAssertEqual(slope[8], slope[0])
        XCTAssertTrue(a[9].isNaN && slope[9].isNaN, "a NaN activation must not become a number")
        var lanes = [Float](repeating: 0, count: 16)
        Float.gelu([Float](repeating: .nan, count: 16), &lanes, 16)
        XCTAssertTrue(lanes.allSatisfy(\.isNaN))
    }
}
