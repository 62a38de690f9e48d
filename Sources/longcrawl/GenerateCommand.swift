import ArgumentParser
import Foundation
import Support
import Model
import Tokenizer
import Training

/// `longcrawl generate`: sample a continuation of a prompt with the recurrent form.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Sample text from a checkpoint with the recurrent form (constant memory per token).",
        discussion: """
        Examples:
          longcrawl generate --checkpoint runs/tiny --prompt "It was a dark and stormy night" --tokens 100
          longcrawl generate --checkpoint runs/tiny --prompt "The" --temperature 0   # greedy
        """
    )

    @Option(help: "Checkpoint folder, or a run folder (its newest checkpoint).")
    var checkpoint: String

    @Option(help: "Prompt text.")
    var prompt: String

    @Option(help: "Tokens to generate.")
    var tokens: Int = 100

    @Option(help: "Sampling temperature (0: greedy).")
    var temperature: Double = 0.8

    @Option(help: "Sample among the k most likely tokens (0: all).")
    var topK: Int = 40

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    func validate() throws {
        if tokens < 0 { throw ValidationError("--tokens must not be negative") }
        if temperature < 0 { throw ValidationError("--temperature must not be negative") }
    }

    func run() throws {
        let opened = try Checkpoint.open(URL(fileURLWithPath: checkpoint))
        let (ckpt, state) = (opened.url, opened.state)
        guard state.config.model.attention.carriesState else {
            throw LongCrawlError("\(ckpt.path): generate needs a model whose attention carries a state (\(state.config.model.attention.rawValue) has no recurrent form)")
        }
        let model = try opened.model()
        let tokenizer = try loadTokenizer(nil)
        // A model trained on JSON-escaped text reads and writes escapes: the prompt is escaped, the output unescaped.
        let encoding = state.options.textEncoding ?? .raw
        var promptBytes: [UInt8] = []
        Array(prompt.utf8).withUnsafeBufferPointer { encoding.encode($0, into: &promptBytes) }
        let promptIds: [UInt16] = promptBytes.withUnsafeBufferPointer { tokenizer.encode(bytes: $0) }
        let ids = promptIds.map { Int32($0) }
        guard !ids.isEmpty else { throw ValidationError("--prompt is empty") }
        let out = Generator.generate(model, prompt: ids, count: tokens, temperature: temperature, topK: topK, seed: seed)
        let bytes: [UInt8] = tokenizer.decode(out.map { UInt16($0) })
        print(prompt + String(decoding: encoding.decode(bytes), as: UTF8.self))
    }
}
