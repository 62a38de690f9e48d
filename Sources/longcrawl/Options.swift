import ArgumentParser
import Foundation
import Tokenizer

/// `--tokenizer`, for every command that tokenizes.
struct TokenizerOption: ParsableArguments {
    @Option(help: "Folder with encoder.json and vocab.bpe (default: $LONGCRAWL_GPT2_DIR, else the vocabulary built into longcrawl).")
    var tokenizer: String?

    /// The GPT-2 tokenizer from `--tokenizer`, else `$LONGCRAWL_GPT2_DIR`, else the vocabulary built into the binary.
    func load() throws -> GPT2Tokenizer { try loadTokenizer(tokenizer) }
}

/// `--corpus`, the benchmarks' folder of .txt books (what each makes of them, its help says).
struct CorpusOption: ParsableArguments {
    @Option(help: "Folder of .txt files the benchmark's input is made from.")
    var corpus: String = "../shared/data/corpus-dev"
}

/// `--data` and `--config` of the training benchmarks.
struct TrainingBenchOptions: ParsableArguments {
    @Option(help: "Dataset folder.")
    var data: String

    @Option(help: "Config (model and training).")
    var config: String = "data/configs/small.json"
}

/// The GPT-2 tokenizer at `path`, else `$LONGCRAWL_GPT2_DIR`, else the vocabulary built into the binary.
func loadTokenizer(_ path: String?) throws -> GPT2Tokenizer {
    if let path = path ?? ProcessInfo.processInfo.environment["LONGCRAWL_GPT2_DIR"] {
        return try GPT2Tokenizer(directory: URL(fileURLWithPath: path))
    }
    return try GPT2Tokenizer.builtIn()
}
