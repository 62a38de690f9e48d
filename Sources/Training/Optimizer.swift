import Foundation
import Model
import Tensor

/// AdamW with decoupled weight decay on matrices only (norm weights are not decayed).
public final class AdamW<S: TensorScalar> {
    public let beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double
    /// First and second moments, one pair per parameter, in `parameters` order.
    public let m: [Tensor<S>], v: [Tensor<S>]
    /// Updates taken so far (bias correction uses it).
    public var step = 0

    public init(parameters: [Parameter<S>], beta1: Double = 0.9, beta2: Double = 0.95, epsilon: Double = 1e-8, weightDecay: Double = 0.1) {
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon; self.weightDecay = weightDecay
        m = parameters.map { Tensor($0.value.shape) }
        v = parameters.map { Tensor($0.value.shape) }
    }

    /// One update of every parameter from its gradient at learning rate `lr`.
    public func update(_ parameters: [Parameter<S>], lr: Double) {
        step += 1
        let c1 = 1 - Foundation.pow(beta1, Double(step)), c2 = 1 - Foundation.pow(beta2, Double(step))
        let b1 = S(beta1), b2 = S(beta2), eps = S(epsilon)
        for (k, p) in parameters.enumerated() {
            let decay = p.decays ? S(1 - lr * weightDecay) : 1
            let w = p.value.data, g = p.grad.data, mk = m[k].data, vk = v[k].data
            let a = S(lr / c1), invC2 = S(1 / c2)
            for i in 0..<p.value.count {
                mk[i] = b1 * mk[i] + (1 - b1) * g[i]
                vk[i] = b2 * vk[i] + (1 - b2) * g[i] * g[i]
                w[i] = w[i] * decay - a * mk[i] / ((vk[i] * invC2).squareRoot() + eps)
            }
        }
    }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm`; returns the norm before clipping.
@discardableResult
public func clipGradients<S: TensorScalar>(_ parameters: [Parameter<S>], maxNorm: Double) -> Double {
    var sum = 0.0
    for p in parameters { for i in 0..<p.grad.count { let g = Double(p.grad[i]); sum += g * g } }
    let norm = sum.squareRoot()
    if norm > maxNorm, norm.isFinite { scaleGradients(parameters, by: S(maxNorm / norm)) }
    return norm
}

/// Multiplies every gradient by `factor`.
public func scaleGradients<S: TensorScalar>(_ parameters: [Parameter<S>], by factor: S) {
    for p in parameters { for i in 0..<p.grad.count { p.grad[i] *= factor } }
}

/// Linear warmup to `peak` over `warmup` steps, then cosine decay to `floor` at `total` steps (and `floor` after).
public func learningRate(step: Int, peak: Double, floor: Double, warmup: Int, total: Int) -> Double {
    if step < warmup { return peak * Double(step + 1) / Double(warmup) }
    if step >= total { return floor }
    let progress = Double(step - warmup) / Double(max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1 + Foundation.cos(Double.pi * progress))
}
