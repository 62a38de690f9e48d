import XCTest
@testable import Tensor

final class GemmTests: XCTestCase {
    /// sgemm and dgemm against the triple loop, with every transpose combination.
    func testGemmMatchesNaiveProduct() {
        func check<S: TensorScalar>(_: S.Type, tol: Double) {
            let m = 5, n = 7, k = 3
            for ta in [false, true] { for tb in [false, true] {
                let a = Tensor<S>(ta ? [k, m] : [m, k], (0..<m*k).map { S(Double(($0 * 7) % 11) - 5) / 3 })
                let b = Tensor<S>(tb ? [n, k] : [k, n], (0..<k*n).map { S(Double(($0 * 5) % 13) - 6) / 4 })
                let c = Tensor<S>([m, n])
                S.gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: a.data, lda: ta ? m : k,
                       b: b.data, ldb: tb ? k : n, beta: 0, c: c.data, ldc: n)
                for i in 0..<m { for j in 0..<n {
                    var want = 0.0
                    for l in 0..<k {
                        let av = Double(ta ? a[l * m + i] : a[i * k + l])
                        let bv = Double(tb ? b[j * k + l] : b[l * n + j])
                        want += av * bv
                    }
                    XCTAssertEqual(Double(c[i * n + j]), want, accuracy: tol)
                } }
            } }
        }
        check(Float.self, tol: 1e-5)
        check(Double.self, tol: 1e-12)
    }
}
