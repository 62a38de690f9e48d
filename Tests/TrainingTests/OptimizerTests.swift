import Foundation
@testable import Model
@testable import Support
import TestSupport
import XCTest
@testable import Training

final class OptimizerTests: XCTestCase {
    /// AdamW against `torch.optim.AdamW` in float64: two matrices (decayed) and a norm weight (not), the same
    /// gradients, betas, eps, weight decay 0.1 and a learning rate that changes every step, over 6 steps. Torch
    /// receives the initial values and gradients as JSON (exact for doubles) and returns its parameters after each
    /// step; the two agree to 1e-12 relative (a few roundings per step, in the same order up to one fused operation).
    func testAdamWWithWeightDecayMatchesTorch() throws {
        let shapes: [(name: String, shape: [Int])] = [("w1", [3, 4]), ("norm", [4]), ("w2", [4, 2])]
        let params = ParameterBlocks<Double>(shapes)
        var rng = SplitMix64(seed: 100)
        func uniform() -> Double { Double(rng.next() >> 11) / Double(1 << 53) * 2 - 1 }
        for i in 0..<params.values.count { params.values[i] = uniform() }
        let initial = (0..<params.values.count).map { params.values[$0] }
        let opt = AdamW(parameters: params, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        let lrs = [1e-2, 3e-2, 5e-2, 2e-2, 1e-3, 4e-2]
        var grads: [[Double]] = [], ours: [[Double]] = []
        for lr in lrs {
            // Gradients of mixed scale (one tiny, so eps matters) per step.
            let g = (0..<params.values.count).map { i in uniform() * (i % 5 == 0 ? 1e-7 : 1) }
            for i in g.indices { params.gradients[i] = g[i] }
            opt.update(params, lr: lr)
            grads.append(g)
            ours.append((0..<params.values.count).map { params.values[$0] })
        }
        XCTAssertEqual(params.map(\.decays), [true, false, true])

        struct Input: Codable {
            var shapes: [[Int]], decays: [Bool], initial: [Double], grads: [[Double]], lrs: [Double]
        }
        let dir = try temporaryFolder(self)
        let input = dir.appendingPathComponent("adamw.json")
        try JSONEncoder().encode(Input(shapes: shapes.map(\.shape), decays: params.map(\.decays), initial: initial, grads: grads, lrs: lrs))
            .write(to: input)
        let script = """
            import json, sys, torch
            a = json.load(open(sys.argv[1]))
            flat = torch.tensor(a["initial"], dtype=torch.float64)
            ps, at = [], 0
            for shape in a["shapes"]:
                n = 1
                for s in shape: n *= s
                ps.append(torch.nn.Parameter(flat[at:at + n].clone().reshape(shape))); at += n
            groups = [{"params": [p for p, d in zip(ps, a["decays"]) if d], "weight_decay": 0.1},
                      {"params": [p for p, d in zip(ps, a["decays"]) if not d], "weight_decay": 0.0}]
            opt = torch.optim.AdamW(groups, lr=1.0, betas=(0.9, 0.95), eps=1e-8, foreach=False)
            out = []
            for g, lr in zip(a["grads"], a["lrs"]):
                g, at = torch.tensor(g, dtype=torch.float64), 0
                for p in ps:
                    p.grad = g[at:at + p.numel()].reshape(p.shape).clone(); at += p.numel()
                for group in opt.param_groups: group["lr"] = lr
                opt.step()
                out.append(torch.cat([p.detach().reshape(-1) for p in ps]).tolist())
            json.dump(out, sys.stdout)
            """
        let r = try runProcess("/usr/bin/env", ["python3", "-c", script, input.path])
        XCTAssertEqual(r.status, 0, r.err)
        let theirs = try JSONDecoder().decode([[Double]].self, from: Data(r.out.utf8))
        XCTAssertEqual(theirs.count, lrs.count)
        for (step, (a, b)) in zip(ours, theirs).enumerated() {
            let worst = zip(a, b).map { abs($0 - $1) / max(abs($1), 1e-3) }.max()!
            XCTAssertLessThan(worst, 1e-12, "step \(step + 1)")
        }
        // The decay is there to be seen: without it, the matrices end elsewhere.
        let noDecay = ParameterBlocks<Double>(shapes)
        for i in initial.indices { noDecay.values[i] = initial[i] }
        let plain = AdamW(parameters: noDecay, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0)
        for (g, lr) in zip(grads, lrs) {
            for i in g.indices { noDecay.gradients[i] = g[i] }
            plain.update(noDecay, lr: lr)
        }
        let decayEffect = zip((0..<initial.count).map { noDecay.values[$0] }, ours.last!).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(decayEffect, 1e-4, "weight decay changes the matrices")
    }

    /// `Generator.sample`: greedy is the argmax; temperature and top-k draw from softmax(logits / T) over the k
    /// largest logits. 200,000 seeded draws per case against that distribution by Pearson's chi-square, bounded
    /// by its quantile at p = 1e-6 (the draws are fixed by the seed, so this cannot flake; a sampler 10% off in the
    /// temperature exceeds the bound 3 times over, as the last check shows; a token outside the top k must never be drawn).
    func testSamplingMatchesTheSoftmax() throws {
        let logits: [Float] = [1.0, -0.5, 2.0, 0.3, 1.7, -2.0, 0.0, 0.9]
        var rng = SplitMix64(seed: 110)
        XCTAssertEqual(Generator.sample(logits, temperature: 0, topK: 0, rng: &rng), 2, "greedy")
        XCTAssertEqual(Generator.sample(logits, temperature: 0, topK: 3, rng: &rng), 2, "greedy ignores top-k")
        for _ in 0..<100 { XCTAssertEqual(Generator.sample(logits, temperature: 1, topK: 1, rng: &rng), 2, "top-1 is greedy") }

        func expected(temperature: Double, topK: Int) -> [Double] {
            let kept = Set(logits.indices.sorted { logits[$0] > logits[$1] }.prefix(topK == 0 ? logits.count : topK))
            let w = logits.indices.map { kept.contains($0) ? Foundation.exp(Double(logits[$0]) / temperature) : 0 }
            let sum = w.reduce(0, +)
            return w.map { $0 / sum }
        }
        func chiSquare(_ counts: [Int], _ p: [Double]) -> (statistic: Double, df: Int) {
            let n = Double(counts.reduce(0, +))
            var x = 0.0, cells = 0
            for (c, q) in zip(counts, p) where q > 0 { x += (Double(c) - n * q) * (Double(c) - n * q) / (n * q); cells += 1 }
            return (x, cells - 1)
        }
        // Chi-square quantiles at 1 - 1e-6 (scipy.stats.chi2.isf(1e-6, df)).
        let bound: [Int: Double] = [2: 27.63, 3: 30.66, 4: 33.38, 7: 40.52]
        let draws = 200_000
        for (temperature, topK, seed) in [(1.0, 0, UInt64(111)), (0.5, 0, 112), (2.0, 0, 113), (1.0, 3, 114), (0.7, 5, 115)] {
            var rng = SplitMix64(seed: seed)
            var counts = [Int](repeating: 0, count: logits.count)
            for _ in 0..<draws { counts[Generator.sample(logits, temperature: temperature, topK: topK, rng: &rng)] += 1 }
            let p = expected(temperature: temperature, topK: topK)
            for i in p.indices where p[i] == 0 { XCTAssertEqual(counts[i], 0, "T \(temperature) top-\(topK): token \(i) is outside the top k") }
            let (x, df) = chiSquare(counts, p)
            print("T \(temperature) top-\(topK): chi-square \(x) on \(df) degrees of freedom")
            XCTAssertLessThan(x, try XCTUnwrap(bound[df]), "T \(temperature) top-\(topK)")
            if topK == 0 {
                XCTAssertGreaterThan(chiSquare(counts, expected(temperature: temperature * 1.1, topK: 0)).statistic, 3 * bound[df]!,
                                     "the test tells a 10% error in the temperature")
            }
        }
    }
}
