import Foundation
@testable import Model
@testable import Tensor

/// The recurrent form, the tests' independent reference for the attention and chunked forms: one token at a time
/// with state S [D, d + 1] in Float64 (no code path of the package runs it: generation and `eval --context` carry the
/// chunked form's state).
struct RecurrentAttention<S: TensorScalar> {
    let phi: SymmetricPower
    var state: [Double]

    init(headDimension d: Int, power p: Int) {
        phi = SymmetricPower(dimension: d, power: p)
        state = [Double](repeating: 0, count: phi.size * (d + 1))
    }

    // step: qr, kr, v [d], gamma (log-gate of this token) -> y [d]
    mutating func step(qr: [S], kr: [S], v: [S], gamma: Double) -> [S] {
        let d = qr.count, dd = phi.size, w = d + 1
        let decay = Foundation.exp(gamma)
        let s = 1 / Double(d).squareRoot()
        var pk = [Double](repeating: 0, count: dd), pq = pk
        phi.forward(kr.map(Double.init), rows: 1, into: &pk)
        phi.forward(qr.map { Double($0) * s }, rows: 1, into: &pq)
        for m in 0..<dd {
            for e in 0..<d { state[m * w + e] = decay * state[m * w + e] + pk[m] * Double(v[e]) }
            state[m * w + d] = decay * state[m * w + d] + pk[m]
        }
        var out = [Double](repeating: 0, count: w)
        gemm(false, false, 1, w, dd, 1.0, pq, state, 0, &out)
        let l = out[d] + attentionEpsilon
        return (0..<d).map { S(out[$0] / l) }
    }
}
