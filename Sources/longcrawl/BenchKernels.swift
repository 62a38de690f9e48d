import ArgumentParser
import Foundation
import Model
import Support
import Tensor
import Training

/// `longcrawl bench kernels`: attention and whole-model step times per token, and the model's GFLOP/s beside sgemm.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Forward and forward+backward time per token of each attention variant and of the whole model, with MFU against sgemm.",
        discussion: "Example:\n  longcrawl bench kernels --config data/configs/small.json --lengths 1024,4096,16384,65536"
    )

    @Option(help: "Config (its model; flops counted at its training context).")
    var config: String = "data/configs/small.json"

    @Option(help: "Comma-separated sequence lengths (batch 1).")
    var lengths: String = "1024,4096,16384,65536"

    @Option(help: "Longest T for attention kinds without a state of fixed size, softmax (their attention form is quadratic in memory).")
    var softmaxLimit: Int = 4096

    @Option(help: "Longest T for the model run that stores every activation (the recomputing run covers all T).")
    var storedLimit: Int = 16384

    func run() throws {
        let file = try RunConfig.load(URL(fileURLWithPath: config))
        let cfg = file.model, trained = file.train.context
        let ts = lengths.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !ts.isEmpty, ts.allSatisfy({ $0 % cfg.chunk == 0 && windowLength % $0 == 0 }) else {
            throw ValidationError("--lengths must be multiples of the chunk \(cfg.chunk) dividing \(windowLength)")
        }
        let c = cfg.dModel, d = cfg.headDim, h = cfg.heads, p = cfg.power
        let phiSize = SymmetricPower.size(dimension: d, power: p)
        print("config \(cfg.name): \(cfg.layers) layers, d_model \(c), \(h) heads of \(d), p \(p) (D = \(phiSize)), chunk \(cfg.chunk), vocabulary \(cfg.vocabSize)")

        print("flops/token forward at T = \(trained) (\(cfg.attentionForm(length: trained)) form) = \(cfg.flopFormula(context: trained)) = " +
              "\(Int(cfg.forwardFlopsPerToken(context: trained))); forward+backward = 3x; the model table counts each T in its own form")

        print("\n| T | attention | forward us/token | fwd+bwd us/token |")
        print("| ---: | --- | ---: | ---: |")
        var rng = SystemRandomNumberGenerator()
        for t in ts {
            let x = Tensor<Float>([t, c])
            for i in 0..<x.count { x[i] = Float.random(in: -1...1, using: &rng) }
            for kind in AttentionKind.allCases {
                if !kind.carriesState && t > softmaxLimit { print("| \(t) | \(kind.rawValue) | skipped (quadratic) | |"); continue }
                let layer = SympowAttention<Float>(dModel: c, heads: h, power: p, chunk: cfg.chunk, kind: kind)
                var r = SystemRandomNumberGenerator()
                layer.initialize(std: 0.02, residualStd: 0.02, using: &r)
                var y: Tensor<Float>?
                let fwd = bestSeconds(2) { y = layer.forward(x, batch: 1, length: t) }
                let both = bestSeconds(2) { y = layer.forward(x, batch: 1, length: t); _ = layer.backward(y!) }
                print(String(format: "| %d | %@ | %.2f | %.2f |", t, kind.rawValue, fwd / Double(t) * 1e6, both / Double(t) * 1e6))
            }
        }

        print("\n| T | activations | model fwd+bwd s | tokens/s | GFLOP/s | MFU (ceiling GFLOP/s) | peak RSS so far |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        // The ceiling as training measures it: sgemm's best rate at each T's GEMM shapes, same run, once per T.
        let ceilings = Dictionary(ts.map { ($0, sgemmCeiling(shapes: cfg.gemmShapes(rows: $0))) }, uniquingKeysWith: { a, _ in a })
        // Recomputing runs first, in ascending T, so the process's peak RSS after each is that run's peak.
        for recompute in [true, false] {
            for t in ts where recompute || t <= storedLimit {
                var model: Transformer<Float>? = Transformer<Float>(config: cfg, seed: 1)
                let tokens = (0..<t).map { Int32(($0 * 7919) % GPT2.vocabularySize) }
                let targets = (0..<t).map { Int32(($0 * 104_729 + 1) % GPT2.vocabularySize) }
                let mask = [Float](repeating: 1, count: t)
                let step = {
                    model!.zeroGradients()
                    _ = model!.forward(tokens: tokens, targets: targets, mask: mask, batch: 1, length: t, recompute: recompute)
                    model!.backward()
                }
                // Timed after one untimed step, as training runs: the first faults in every activation page and
                // reuses none of the heap (at 65,536 it ran at 929 tokens/s, warm steps at 962-1,020).
                step()
                let seconds = bestSeconds(t >= 16_384 ? 1 : 2, step)
                model = nil
                // Measured again after the run: a ceiling measured while something else held the cores understates
                // sgemm (one such run here gave 105 GFLOP/s against 190 and an MFU of 116%).
                let ceiling = max(ceilings[t]!, sgemmCeiling(shapes: cfg.gemmShapes(rows: t)))
                let gflops = 3 * cfg.forwardFlopsPerToken(context: t) * Double(t) / seconds / 1e9
                print(String(format: "| %d | %@ | %.2f | %.0f | %.1f | %.1f%% (%.0f) | %@ |", t, recompute ? "recomputed" : "stored", seconds,
                             Double(t) / seconds, gflops, 100 * gflops / ceiling, ceiling, formatBytes(ResidentMemory.peak)))
            }
        }
        print("(useful flops only: the recomputed MLP forward is not counted)")
    }}
