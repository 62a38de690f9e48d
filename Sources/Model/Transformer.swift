import Foundation
import Support
import Tensor

/// The architecture of a `Transformer`: the `model` section of a config file (`data/configs/*.json`, snake_case
/// keys). How it trains, the training context included, is the `train` section (`TrainingConfig`).
public struct ModelConfig: Codable, Equatable, Sendable {
    public var name: String
    public var vocabSize = GPT2.paddedVocabularySize
    public var layers: Int
    public var dModel: Int
    public var heads: Int
    public var power: Int
    public var chunk: Int
    public var attention: AttentionKind
    var mlpRatio = 4.0
    var embedNorm = true

    enum CodingKeys: String, CodingKey {
        case name, layers, heads, power, chunk, attention
        case vocabSize = "vocab_size", dModel = "d_model", mlpRatio = "mlp_ratio", embedNorm = "embed_norm"
    }

    public init(name: String, layers: Int, dModel: Int, heads: Int, power: Int, chunk: Int, attention: AttentionKind) {
        self.name = name; self.layers = layers; self.dModel = dModel; self.heads = heads
        self.power = power; self.chunk = chunk; self.attention = attention
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        layers = try c.decode(Int.self, forKey: .layers)
        dModel = try c.decode(Int.self, forKey: .dModel)
        heads = try c.decode(Int.self, forKey: .heads)
        power = try c.decode(Int.self, forKey: .power)
        chunk = try c.decode(Int.self, forKey: .chunk)
        attention = try c.decode(AttentionKind.self, forKey: .attention)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? vocabSize
        mlpRatio = try c.decodeIfPresent(Double.self, forKey: .mlpRatio) ?? mlpRatio
        embedNorm = try c.decodeIfPresent(Bool.self, forKey: .embedNorm) ?? embedNorm
    }

    public var headDim: Int { dModel / heads }
    public var hidden: Int { Int((Double(dModel) * mlpRatio).rounded()) }

    /// Every constraint the model relies on; the error says which value is wrong.
    public func validate() throws {
        func bad(_ m: String) -> LongCrawlError { LongCrawlError("config '\(name)': \(m)") }
        guard layers >= 1 else { throw bad("layers must be positive, got \(layers)") }
        guard dModel >= 1 else { throw bad("d_model must be positive, got \(dModel)") }
        guard heads >= 1 else { throw bad("heads must be positive, got \(heads)") }
        guard dModel % heads == 0 else { throw bad("heads (\(heads)) must divide d_model (\(dModel))") }
        guard headDim % 2 == 0 else { throw bad("head dimension d_model / heads = \(headDim) must be even (rotary pairs)") }
        guard dModel % 2 == 0 else { throw bad("d_model must be even, got \(dModel)") }
        guard power >= 2, power % 2 == 0 else { throw bad("power p must be an even number >= 2, got \(power)") }
        guard chunk >= 1 else { throw bad("chunk must be positive, got \(chunk)") }
        guard vocabSize >= GPT2.vocabularySize else { throw bad("vocab_size \(vocabSize) is smaller than GPT-2's 50257") }
        // hidden = round(d_model x mlp_ratio) must be a size (mlp_ratio 1e300 would trap in the conversion to Int).
        guard mlpRatio > 0, (Double(dModel) * mlpRatio).rounded() < Double(1 << 40) else {
            throw bad("mlp_ratio must be positive and d_model x mlp_ratio a size, got \(mlpRatio)")
        }
    }
}

extension ModelConfig {
    /// The attention form of a forward over `length` tokens at once (`AttentionForm.choose`).
    public func attentionForm(length: Int) -> AttentionForm {
        AttentionForm.choose(kind: attention, headDimension: headDim, power: power, chunk: chunk, length: length)
    }
}

/// A named parameter and its gradient: views into the parameter and gradient blocks at `offset`.
public struct Parameter<S: TensorScalar> {
    public let name: String
    public let value: Tensor<S>
    let grad: Tensor<S>
    public let offset: Int
    /// Matrices get weight decay; norms do not.
    public var decays: Bool { value.shape.count == 2 }
    /// The elements of the blocks this parameter occupies.
    public var range: Range<Int> { offset..<(offset + value.count) }

    /// This parameter's slice of another block laid out like the parameters (an optimizer moment).
    public func view(of block: Tensor<S>) -> Tensor<S> { Tensor(viewing: block, offset: offset, shape: value.shape) }
}

/// Every parameter of a model as llm.c lays them out: the values in one flat block, the gradients in another of the
/// same size, each parameter tensor (and its gradient) a view at the same offset of each, in a fixed order. The
/// optimizer, clipping, zeroing, the allreduce and checkpoints each make one pass over a block.
public final class ParameterBlocks<S: TensorScalar>: RandomAccessCollection {
    public let values: Tensor<S>, gradients: Tensor<S>
    private let list: [Parameter<S>]
    private let position: [String: Int]

    /// Zero-filled blocks for `shapes` (names and shapes, in block order).
    public init(_ shapes: [(name: String, shape: [Int])]) {
        let counts = shapes.map { $0.shape.reduce(1, *) }
        let values = Tensor<S>([counts.reduce(0, +)]), gradients = Tensor<S>([values.count])
        var offset = 0
        list = zip(shapes, counts).map { named, count in
            defer { offset += count }
            return Parameter(name: named.name, value: Tensor(viewing: values, offset: offset, shape: named.shape),
                             grad: Tensor(viewing: gradients, offset: offset, shape: named.shape), offset: offset)
        }
        self.values = values; self.gradients = gradients
        position = Dictionary(uniqueKeysWithValues: list.enumerated().map { ($1.name, $0) })
    }

    /// The parameter named `name`, which must exist.
    public subscript(name: String) -> Parameter<S> {
        guard let i = position[name] else { preconditionFailure("no parameter \(name)") }
        return list[i]
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { list.count }
    public subscript(i: Int) -> Parameter<S> { list[i] }
}

/// The GPT-2-style pre-norm transformer with sympow attention (docs/MODEL.md, "The transformer around it").
public final class Transformer<S: TensorScalar> {
    public let config: ModelConfig
    /// Every parameter, with the names used in checkpoints; the layers' weights are views into its blocks.
    public let parameters: ParameterBlocks<S>
    public let embedding: Embedding<S>
    let embedNorm: LayerNorm<S>?
    let ln1: [LayerNorm<S>], attention: [SympowAttention<S>], ln2: [LayerNorm<S>], mlp: [MLP<S>]
    let lnFinal: LayerNorm<S>
    /// The elements of the parameter blocks each layer occupies (ln1 through mlp.w2, contiguous).
    let layerRanges: [Range<Int>]
    private var headGradient: Tensor<S>?
    /// Inputs of each block's MLP half kept by a recomputing forward (its activations are rebuilt in backward).
    private var mlpInputs: [Tensor<S>]?

    public init(config: ModelConfig, seed: UInt64) {
        self.config = config
        let p = ParameterBlocks<S>(Self.parameterShapes(config))
        parameters = p
        embedding = Embedding(wte: p["wte"])
        embedNorm = config.embedNorm ? LayerNorm(weight: p["embed_norm.weight"]) : nil
        ln1 = (0..<config.layers).map { LayerNorm(weight: p["blocks.\($0).ln1.weight"]) }
        ln2 = (0..<config.layers).map { LayerNorm(weight: p["blocks.\($0).ln2.weight"]) }
        attention = (0..<config.layers).map {
            SympowAttention(projection: p["blocks.\($0).attn.w_qkvgr"], output: p["blocks.\($0).attn.w_o"], heads: config.heads,
                            power: config.power, chunk: config.chunk, kind: config.attention)
        }
        mlp = (0..<config.layers).map { MLP(w1: p["blocks.\($0).mlp.w1"], w2: p["blocks.\($0).mlp.w2"]) }
        lnFinal = LayerNorm(weight: p["ln_f.weight"])
        layerRanges = (0..<config.layers).map { p["blocks.\($0).ln1.weight"].offset..<p["blocks.\($0).mlp.w2"].range.upperBound }
        var rng = SplitMix64(seed: seed)
        let residual = 0.02 / (2 * Double(config.layers)).squareRoot()
        for i in 0..<embedding.wte.count { embedding.wte[i] = S(normal(&rng) * 0.02) }
        for l in 0..<config.layers {
            attention[l].initialize(std: 0.02, residualStd: residual, using: &rng)
            for i in 0..<mlp[l].w1.count { mlp[l].w1[i] = S(normal(&rng) * 0.02) }
            for i in 0..<mlp[l].w2.count { mlp[l].w2[i] = S(normal(&rng) * residual) }
        }
    }

    /// Every parameter's name and shape, in the order of the blocks and of checkpoints.
    static func parameterShapes(_ config: ModelConfig) -> [(name: String, shape: [Int])] {
        let c = config.dModel, f = config.hidden
        var out = [(name: "wte", shape: [config.vocabSize, c])]
        if config.embedNorm { out.append(("embed_norm.weight", [c])) }
        for l in 0..<config.layers {
            out += [("blocks.\(l).ln1.weight", [c]), ("blocks.\(l).attn.w_qkvgr", [c, 3 * c + 2 * config.heads]), ("blocks.\(l).attn.w_o", [c, c]),
                    ("blocks.\(l).ln2.weight", [c]), ("blocks.\(l).mlp.w1", [c, f]), ("blocks.\(l).mlp.w2", [f, c])]
        }
        out.append(("ln_f.weight", [c]))
        return out
    }

    public func zeroGradients() { parameters.gradients.zero() }

    /// Mean masked cross-entropy of predicting `targets` from `tokens` ([B, T] each, row-major), and the loss at
    /// every position. With `training`, the head's share of dwte is accumulated here and `backward()` may follow.
    /// With `recompute`, each block's MLP half (LN2 and the MLP, whose [B*T, 4C] pre-activation is the largest
    /// activation) keeps only its input, and `backward()` runs that half forward again: activation memory drops
    /// from about 19 to about 12 floats of [B*T, C] per layer, for about 3% more flops. Gradients are the same.
    /// With `state`, each row continues it and leaves it at the segment's end (`hidden`).
    // forward: tokens, targets [B*T], mask [B*T] -> loss
    @_specialize(where S == Float)
    public func forward(tokens: [Int32], targets: [Int32], mask: [Float], batch: Int, length: Int, training: Bool = true,
                        recompute: Bool = false, state: RecurrentState<S>? = nil) -> (loss: Double, perPosition: [Double]) {
        precondition(targets.count == tokens.count && mask.count == tokens.count, "inputs are not [B, T]")
        let h = hidden(tokens: tokens, batch: batch, length: length, training: training, recompute: recompute, state: state)
        let (loss, dh, perPosition) = LanguageModelHead.lossAndGradient(h, wte: embedding.wte, dwte: training ? embedding.dwte : nil,
                                                                         targets: targets, mask: mask)
        headGradient = training ? dh : nil
        return (loss, perPosition)
    }

    /// The final hidden states (after the last norm) of `tokens` [B, T], the one forward of training and inference.
    /// Without `state` every row starts at its first token, in the form each layer picks by cost. With `state`, each
    /// row continues the segment before it (`eval --context`, `generate`, `train --carry-state`) and the state ends
    /// after this one: segment after segment equals one forward over everything, at O(1) memory in the tokens seen;
    /// in training the carried state is a constant for `backward()` (truncated backpropagation through time).
    // hidden: tokens [B*T] -> h [B*T, C]
    @_specialize(where S == Float)
    public func hidden(tokens: [Int32], batch: Int, length: Int, training: Bool = false, recompute: Bool = false,
                       state: RecurrentState<S>? = nil) -> Tensor<S> {
        precondition(tokens.count == batch * length && (state == nil || state!.batch == batch), "inputs are not [B, T]")
        var x = embedding.forward(tokens)
        if let n = embedNorm { x = n.forward(x) }
        mlpInputs = recompute && training ? [] : nil
        for l in 0..<config.layers {
            // block l: x [B*T, C] -> x + Attn(LN1(x)), then + MLP(LN2(x)), in place
            var carries = state?.attention[l] ?? []
            x.add(attention[l].forward(ln1[l].forward(x), batch: batch, length: length, carries: &carries))
            state?.attention[l] = carries
            mlpInputs?.append(x.copy())
            x.add(mlp[l].forward(ln2[l].forward(x)))
            if !training { releaseBlock(l) } else if recompute { ln2[l].releaseActivations(); mlp[l].releaseActivations() }
        }
        let h = lnFinal.forward(x)
        if !training { embedNorm?.releaseActivations(); lnFinal.releaseActivations() }
        return h
    }

    /// Accumulates every parameter's gradient of the loss of the last `forward(training: true)`. `onGradientsReady`
    /// gets each range of the gradient block (elements, as `Parameter.range`) as soon as backward writes it no more:
    /// ln_f's, each layer's from the last to the first, and at the end the rest (wte, whose head share `forward`
    /// added, and embed_norm). The ranges are adjacent, descending, and cover the block once; data-parallel training
    /// starts each one's allreduce there, while the layers below still run.
    @_specialize(where S == Float)
    public func backward(onGradientsReady ready: ((Range<Int>) -> Void)? = nil) {
        guard let dh = headGradient else { preconditionFailure("backward needs a training forward first") }
        headGradient = nil
        var dx = lnFinal.backward(dh)
        ready?(parameters["ln_f.weight"].range)
        for l in stride(from: config.layers - 1, through: 0, by: -1) {
            if let inputs = mlpInputs { _ = mlp[l].forward(ln2[l].forward(inputs[l])); mlpInputs![l] = Tensor([0]) }
            dx.add(ln2[l].backward(mlp[l].backward(dx)))
            dx.add(ln1[l].backward(attention[l].backward(dx)))
            releaseBlock(l)
            ready?(layerRanges[l])
        }
        mlpInputs = nil
        if let n = embedNorm { dx = n.backward(dx) }
        embedding.backward(dx)
        ready?(0..<layerRanges[0].lowerBound)
    }
}

/// What the rows of a batch carry from one segment to the next: per layer, each (row, head)'s attention carry.
public final class RecurrentState<S: TensorScalar> {
    public let batch: Int
    var attention: [[SympowAttention<S>.Carry]]
    public var layers: Int { attention.count }
    /// Floats held: B x layers x heads x D x (d + 1).
    public var count: Int { attention.reduce(0) { $0 + $1.reduce(0) { $0 + $1.state.count } } }
    let empty: [SympowAttention<S>.Carry]

    /// Every row at its window's start.
    public init(_ model: Transformer<S>, batch: Int) {
        self.batch = batch
        empty = model.attention.map(\.emptyCarry)
        attention = empty.map { [SympowAttention<S>.Carry](repeating: $0, count: batch * model.config.heads) }
    }

    /// Row b back at its window's start.
    public func reset(row b: Int) {
        for l in attention.indices {
            let h = attention[l].count / batch
            for i in (b * h)..<((b + 1) * h) { attention[l][i] = empty[l] }
        }
    }

    /// Layer l's states [B*H, D, d + 1] as one array, and its rotary positions [B*H] (checkpoints).
    public func states(layer l: Int) -> [S] { attention[l].flatMap(\.state) }
    public func positions(layer l: Int) -> [Double] { attention[l].map(\.position) }

    /// Sets layer l's carries from `states` and `positions` as `states(layer:)` and `positions(layer:)` give them.
    public func restore(layer l: Int, states: [S], positions: [Double]) {
        let n = empty[l].state.count
        precondition(states.count == n * attention[l].count && positions.count == attention[l].count, "carried state of the wrong size")
        for i in attention[l].indices {
            attention[l][i] = SympowAttention<S>.Carry(state: Array(states[(i * n)..<((i + 1) * n)]), position: positions[i])
        }
    }
}

extension Transformer {
    func releaseBlock(_ l: Int) {
        ln1[l].releaseActivations(); attention[l].releaseActivations(); ln2[l].releaseActivations(); mlp[l].releaseActivations()
    }
}
