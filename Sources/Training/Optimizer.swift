import Foundation
import Model
import Support
import Tensor

/// AdamW with decoupled weight decay on matrices only (norm weights are not decayed).
public final class AdamW<S: TensorScalar> {
    let beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double
    /// First and second moments, flat blocks laid out like the parameters (each parameter's at its offset).
    let m: Tensor<S>, v: Tensor<S>
    /// Updates taken so far (bias correction uses it).
    public var step = 0

    public init(parameters: ParameterBlocks<S>, beta1: Double = 0.9, beta2: Double = 0.95, epsilon: Double = 1e-8, weightDecay: Double = 0.1) {
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon; self.weightDecay = weightDecay
        m = Tensor([parameters.values.count]); v = Tensor([parameters.values.count])
    }

    /// One update of every parameter from its gradient at learning rate `lr`: one pass over the blocks, a
    /// parameter's range at a time (its weight decay).
    func update(_ parameters: ParameterBlocks<S>, lr: Double) {
        precondition(parameters.values.count == m.count, "AdamW built for \(m.count) parameters, given \(parameters.values.count)")
        step += 1
        let c1 = 1 - Foundation.pow(beta1, Double(step)), c2 = 1 - Foundation.pow(beta2, Double(step))
        let b1 = S(beta1), b2 = S(beta2), eps = S(epsilon), a = S(lr / c1), invC2 = S(1 / c2)
        let blocks = (w: SendablePointer(parameters.values.data), g: SendablePointer(parameters.gradients.data),
                      m: SendablePointer(m.data), v: SendablePointer(v.data))
        for p in parameters {
            let decay = p.decays ? S(1 - lr * weightDecay) : 1
            let start = p.range.lowerBound
            parallelSlices(p.range.count) { slice in
                let (w, g, m, v) = (blocks.w.pointer, blocks.g.pointer, blocks.m.pointer, blocks.v.pointer)
                for i in (start + slice.lowerBound)..<(start + slice.upperBound) {
                    m[i] = b1 * m[i] + (1 - b1) * g[i]
                    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                    w[i] = w[i] * decay - a * m[i] / ((v[i] * invC2).squareRoot() + eps)
                }
            }
        }
    }
}

/// Scales `gradients` (a gradient block) so their L2 norm is at most `maxNorm`; returns the norm before clipping.
@discardableResult
func clipGradients<S: TensorScalar>(_ gradients: Tensor<S>, maxNorm: Double) -> Double {
    var sum = 0.0
    for i in 0..<gradients.count { let g = Double(gradients[i]); sum += g * g }
    let norm = sum.squareRoot()
    if norm > maxNorm, norm.isFinite { gradients.scale(by: S(maxNorm / norm)) }
    return norm
}

/// Linear warmup to `peak` over `warmup` steps, then cosine decay to `floor` at `total` steps (and `floor` after).
func learningRate(step: Int, peak: Double, floor: Double, warmup: Int, total: Int) -> Double {
    if step < warmup { return peak * Double(step + 1) / Double(warmup) }
    if step >= total { return floor }
    let progress = Double(step - warmup) / Double(max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1 + Foundation.cos(Double.pi * progress))
}
