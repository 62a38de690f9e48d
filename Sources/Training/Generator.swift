import Foundation
import Model
import Support
import Tensor

/// Samples text from a model with the recurrent form: the prompt in one segment, then one token at a time,
/// each step O(1) in the tokens so far.
public enum Generator {
    /// `count` token ids following `prompt`. `temperature` 0 is greedy; `topK` 0 keeps the whole vocabulary.
    public static func generate(_ model: Transformer<Float>, prompt: [Int32], count: Int, temperature: Double, topK: Int, seed: UInt64) -> [Int32] {
        precondition(!prompt.isEmpty, "an empty prompt")
        let c = model.config.dModel, v = model.config.vocabSize
        let state = RecurrentState(model, batch: 1)
        var rng = SplitMix64(seed: seed)
        var h = model.hidden(tokens: prompt, batch: 1, length: prompt.count, state: state)
        var last = prompt.count - 1
        var out: [Int32] = []
        var logits = [Float](repeating: 0, count: v)
        for _ in 0..<count {
            // logits = h_last wte^T, over GPT-2's 50,257 real tokens only (the rest is padding).
            gemm(false, true, 1, v, c, 1, h, model.embedding.wte, 0, &logits, offsets: (last * c, 0, 0))
            let next = Int32(sample(Array(logits[0..<GPT2.vocabularySize]), temperature: temperature, topK: topK, rng: &rng))
            out.append(next)
            if out.count == count { break }
            h = model.hidden(tokens: [next], batch: 1, length: 1, state: state)
            last = 0
        }
        return out
    }

    static func sample(_ logits: [Float], temperature: Double, topK: Int, rng: inout SplitMix64) -> Int {
        if temperature <= 0 { return logits.indices.max { logits[$0] < logits[$1] }! }
        var ids = Array(logits.indices)
        if topK > 0 && topK < ids.count { ids = Array(ids.sorted { logits[$0] > logits[$1] }.prefix(topK)) }
        let m = ids.map { Double(logits[$0]) }.max()!
        let weights = ids.map { Foundation.exp((Double(logits[$0]) - m) / temperature) }
        var u = Double(rng.next() >> 11) / Double(1 << 53) * weights.reduce(0, +)
        for (k, w) in weights.enumerated() { u -= w; if u < 0 { return ids[k] } }
        return ids.last!
    }
}
