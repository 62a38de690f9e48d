import Tensor

/// The symmetric power embedding phi_p: one entry per multiset {i_1 <= ... <= i_p} of the d coordinates,
/// `sqrt(multinomial count) * x_i1 * ... * x_ip`, so that phi_p(q) . phi_p(k) = (q . k)^p exactly.
/// The multisets are enumerated once per (d, p).
public struct SymmetricPower: Sendable {
    let dimension: Int
    public let power: Int
    /// D = C(d + p - 1, p).
    public let size: Int
    /// [size * power] coordinate indices of each multiset, non-decreasing.
    let indices: [Int32]
    /// sqrt(p! / prod(multiplicity!)) per multiset.
    let weights: [Double]

    /// D = C(d + p - 1, p) without enumerating the multisets.
    public static func size(dimension d: Int, power p: Int) -> Int {
        // After step i the product is C(d + i, i + 1), an integer, so every division is exact.
        (0..<p).reduce(1) { $0 * (d + $1) / ($1 + 1) }
    }

    public init(dimension d: Int, power p: Int) {
        precondition(d >= 1 && p >= 1, "phi_p needs d >= 1 and p >= 1")
        var indices: [Int32] = [], weights: [Double] = []
        var current = [Int32](repeating: 0, count: p)
        func factorial(_ n: Int) -> Double { n <= 1 ? 1 : (2...n).reduce(1.0) { $0 * Double($1) } }
        func visit(_ position: Int, _ from: Int32) {
            if position == p {
                indices += current
                var multiplicities = 1.0, run = 1
                for k in 1..<max(p, 1) where p > 1 {
                    if current[k] == current[k - 1] { run += 1 } else { multiplicities *= factorial(run); run = 1 }
                }
                multiplicities *= factorial(run)
                weights.append((factorial(p) / multiplicities).squareRoot())
                return
            }
            for i in from..<Int32(d) { current[position] = i; visit(position + 1, i) }
        }
        visit(0, 0)
        self.dimension = d
        self.power = p
        self.indices = indices
        self.weights = weights
        size = weights.count
    }

    /// phi(x) for each row: x [rows, d] -> out [rows, D].
    public func forward<S: TensorScalar>(_ x: UnsafePointer<S>, rows: Int, into out: UnsafeMutablePointer<S>) {
        if power == 2 { return forward2(x, rows: rows, into: out) }
        let p = power, d = dimension, dd = size
        indices.withUnsafeBufferPointer { idx in
            weights.withUnsafeBufferPointer { w in
                for r in 0..<rows {
                    let xr = x + r * d, o = out + r * dd
                    for m in 0..<dd {
                        var v = S(w[m])
                        let base = m * p
                        for k in 0..<p { v *= xr[Int(idx[base + k])] }
                        o[m] = v
                    }
                }
            }
        }
    }

    /// dx += d(phi(x))^T dphi for each row: x [rows, d], dphi [rows, D] -> dx [rows, d] (accumulated).
    public func backward<S: TensorScalar>(_ x: UnsafePointer<S>, _ dphi: UnsafePointer<S>, rows: Int, into dx: UnsafeMutablePointer<S>) {
        if power == 2 { return backward2(x, dphi, rows: rows, into: dx) }
        let p = power, d = dimension, dd = size
        indices.withUnsafeBufferPointer { idx in
            weights.withUnsafeBufferPointer { w in
                for r in 0..<rows {
                    let xr = x + r * d, g = dphi + r * dd, dxr = dx + r * d
                    for m in 0..<dd {
                        let scale = g[m] * S(w[m])
                        if scale == 0 { continue }
                        let base = m * p
                        for k in 0..<p {
                            var v = scale
                            for l in 0..<p where l != k { v *= xr[Int(idx[base + l])] }
                            dxr[Int(idx[base + k])] += v
                        }
                    }
                }
            }
        }
    }

    // p = 2, the common case, as contiguous loops in eight SIMD lanes: entry (i, j), i <= j, in row-major
    // upper-triangle order is w_ij x_i x_j with w_ii = 1 and w_ij = sqrt(2) otherwise.

    private func forward2<S: TensorScalar>(_ x: UnsafePointer<S>, rows: Int, into out: UnsafeMutablePointer<S>) {
        let d = dimension, dd = size, r2 = S(2.0.squareRoot())
        for r in 0..<rows {
            let xr = x + r * d
            var o = out + r * dd
            for i in 0..<d {
                let xi = xr[i]
                o[0] = xi * xi
                let a = r2 * xi
                // By hand in eight lanes: the index arithmetic's overflow checks kept the compiler's loop scalar.
                var k = 1
                while i + k + 8 <= d { store8(a * load8(xr + i + k), o + k); k += 8 }
                while i + k < d { o[k] = a * xr[i + k]; k += 1 }
                o += d - i
            }
        }
    }

    // The sum over j is a reduction, which the compiler keeps in order (one lane, each add waiting on the last):
    // eight lanes by hand, then the lanes and the tail.
    private func backward2<S: TensorScalar>(_ x: UnsafePointer<S>, _ dphi: UnsafePointer<S>, rows: Int, into dx: UnsafeMutablePointer<S>) {
        let d = dimension, dd = size, r2 = S(2.0.squareRoot())
        for r in 0..<rows {
            let xr = x + r * d, dxr = dx + r * d
            var g = dphi + r * dd
            for i in 0..<d {
                let xi = xr[i]
                var lanes = SIMD8<S>()
                var j = i + 1
                while j + 8 <= d {
                    let gj = r2 * load8(g + (j - i)), xj = load8(xr + j)
                    lanes.addProduct(gj, xj)
                    store8(load8(dxr + j).addingProduct(gj, SIMD8(repeating: xi)), dxr + j)
                    j += 8
                }
                var acc = 2 * g[0] * xi + lanes.sum()
                while j < d {
                    let gj = r2 * g[j - i]
                    acc += gj * xr[j]
                    dxr[j] += gj * xi
                    j += 1
                }
                dxr[i] += acc
                g += d - i
            }
        }
    }
}

@inline(__always) private func load8<S: TensorScalar>(_ p: UnsafePointer<S>) -> SIMD8<S> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<S>.self) }
@inline(__always) private func load8<S: TensorScalar>(_ p: UnsafeMutablePointer<S>) -> SIMD8<S> { load8(UnsafePointer(p)) }
@inline(__always) private func store8<S: TensorScalar>(_ v: SIMD8<S>, _ p: UnsafeMutablePointer<S>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<S>.self) }

