import Foundation
import XCTest
@testable import Tensor

/// The vectorized softmax kernels against Foundation's exp and a plain max, in every lane and the scalar tail.
final class SoftmaxKernelTests: XCTestCase {
    func testExpShiftedSumMatchesExp() {
        var rng = SystemRandomNumberGenerator()
        for n in [1, 7, 8, 9, 50_257] {
            let x = (0..<n).map { _ in Float.random(in: -100...20, using: &rng) }
            let shift = Float.maximum(x, n)
            XCTAssertEqual(shift, x.max()!)
            var y = x
            let sum = y.withUnsafeMutableBufferPointer { Float.expShiftedSum($0.baseAddress!, n, shift: shift) }
            var want = 0.0
            for i in 0..<n {
                // The argument is the Float difference, as in the kernel; exp of it within 2 ulp.
                let e = Foundation.exp(Double(x[i] - shift))
                want += Double(Float(e))
                if e >= Double(Float.leastNormalMagnitude) {
                    XCTAssertEqual(Double(y[i]), e, accuracy: 2 * Double(Float(e).ulp), "x \(x[i]) shift \(shift)")
                } else {
                    XCTAssertLessThanOrEqual(y[i], 1.0001 * Float.leastNormalMagnitude, "underflow is clamped to about FLT_MIN")
                }
            }
            XCTAssertEqual(sum, want, accuracy: 1e-6 * want)
        }
        // exp(0) = 1 exactly, and the shift makes the largest entry exactly 1.
        var one: [Float] = [3, 3, 3, 3, 3, 3, 3, 3, 3]
        XCTAssertEqual(one.withUnsafeMutableBufferPointer { Float.expShiftedSum($0.baseAddress!, 9, shift: 3) }, 9)
        XCTAssertEqual(one, [Float](repeating: 1, count: 9))
    }
}
