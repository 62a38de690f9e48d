import ArgumentParser

@main
struct LongCrawl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "longcrawl",
        abstract: "Preprocess, stream, train and evaluate on LongCrawl64-style long-document corpora.",
        subcommands: [PreprocessCommand.self, InspectCommand.self, VerifyCommand.self, SampleCommand.self, Bench.self]
    )
}
