import ArgumentParser
import Cluster
import Foundation
import Preprocess
import Shards
import Support
import Tokenizer

/// `longcrawl preprocess`: raw text to GPT-2 token shards.
struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Tokenize raw corpora into 65,536-token windows in compressed shards.",
        discussion: """
        Inputs are files or folders (searched recursively). A file's kind comes from its bytes, not its name: \
        parquet (FineWeb), JSONL with one {"text": ..., "id": ...} object a line, WARC/WET records (Common \
        Crawl; conversion records only), or UTF-8 text (one document), each plain or compressed with zstd \
        (several frames, long windows) or gzip (several members). A file of no known kind is reported and \
        counted as unreadable. A document of fewer than 65,536 \
        UTF-8 bytes is dropped from its length alone, before it is decoded or tokenized; one of fewer than 65,536 \
        GPT-2 tokens after tokenizing. Each kept document gives its first window (or more with --windows-per-doc). \
        A document goes to heldout or train by a hash of its id. Input files (and parquet row groups) are read \
        on --workers threads; the output does not depend on their number. `inspect` prints the funnel.

        An input may also be an http(s) URL, given here or in an --inputs-from listing (RedPajama-v2's URL lists): \
        streamed, never stored whole, resumed with HTTP Range after a dropped connection, retried after 5xx and \
        429. A URL that cannot be had stops the run with an error naming it (--resume continues); with \
        --skip-missing, a 404 (or a missing local path) is counted as dropped_missing instead. RedPajama-v2's \
        layout is recognized from the URL's path as from a local one. Parquet is read from local files only.

        Examples:
          longcrawl preprocess data/sample --out out/sample
          longcrawl preprocess crawl/*.jsonl.zst --out out/crawl --format zst --workers 2
          longcrawl preprocess dclm/ --id-field metadata.WARC-Record-ID --out out/dclm
          longcrawl preprocess redpajama/*.json.gz --text-field raw_content --out out/rp
          longcrawl preprocess crawl --out out/crawl --resume      # after an interruption
          longcrawl preprocess rpv2/documents --text-field raw_content --recipe longcrawl64 --out out/lc64
          longcrawl preprocess --inputs-from document-urls.txt --skip-missing --recipe longcrawl64 --out out/lc64
        """
    )

    @Argument(help: "Input files, folders or http(s) URLs of any supported kind.")
    var inputs: [String] = []

    @Option(help: "A file or URL listing more inputs, one path or http(s) URL a line (relative paths: from the listing's folder).")
    var inputsFrom: String?

    @Flag(help: "Count an input that is not there (HTTP 404 or 410, or no such path) as dropped_missing and go on.")
    var skipMissing = false

    @Option(help: "HTTP connections open at once per process (rank); threads reading URLs are at most this many.")
    var connections: Int = 8

    @Option(help: "Under mpirun with dedup: the folder for each rank's record of its first pass (its windows, compressed), so each input is read once; a node-local disk saves the shared file system that traffic (default: the output folder).")
    var scratch: String?

    @OptionGroup var output: DatasetOutputOptions

    @Option(help: "Fraction of documents (by id hash) held out for evaluation (default 0.01; longcrawl64: 52,131 / 6,661,465, its release's).")
    var heldoutFraction: Double?

    @Option(help: "Windows taken per kept document: a number, or 'all'.")
    var windowsPerDoc: String = "1"

    @Option(help: "Reading and tokenizing threads (default: all cores); the output does not depend on it.")
    var workers: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Field holding the text: a JSON key or dotted path (a.b), or a parquet column.")
    var textField: String = "text"

    @Option(help: "Field holding the document id, as --text-field (absent: file:line, file:row, or the WARC record id).")
    var idField: String = "id"

    @OptionGroup var tokenizer: TokenizerOption

    @Flag(help: "Stop at the first unreadable record instead of dropping it with a warning.")
    var strict = false

    @OptionGroup(title: "Quality rules (RedPajama-v2's signals, Gopher's thresholds)") var quality: QualityOptions

    @Option(help: "Store each window rotated as LongCrawl64 does, numpy.roll(window, k), k drawn from this seed, the document id and the window's index (docs/FORMATS.md); none to store windows in order (the default, but for longcrawl64: seed 0).")
    var roll: String?

    @Option(help: "What the tokenizer reads: raw (the text's UTF-8; the default) or json (Python's json.dumps(text)[1:-1], LongCrawl64's tokenization; the default of --recipe longcrawl64). Rules and quality signals read the text itself either way.")
    var textEncoding: TextEncoding?

    func validate() throws {
        guard !inputs.isEmpty || inputsFrom != nil else { throw ValidationError("give inputs, --inputs-from LIST, or both") }
        guard roll == nil || roll == "none" || UInt64(roll!) != nil else { throw ValidationError("--roll must be a seed (a non-negative integer) or none, got '\(roll!)'") }
        guard windowsPerDoc == "all" || (Int(windowsPerDoc) ?? 0) >= 1 else {
            throw ValidationError("--windows-per-doc must be a positive number or 'all', got '\(windowsPerDoc)'")
        }
    }

    func run() throws {
        var options = PreprocessOptions()
        options.format = output.shardFormat
        options.level = output.level
        let lc64 = quality.recipe == "longcrawl64"
        options.heldoutFraction = heldoutFraction ?? (lc64 ? LongCrawl64.heldoutFraction : 0.01)
        options.windowsPerDocument = windowsPerDoc == "all" ? nil : Int(windowsPerDoc)
        options.shardWindows = output.shardWindows
        options.workers = workers
        options.textField = textField
        options.idField = idField
        options.strict = strict
        options.roll = roll == "none" ? nil : roll.flatMap { UInt64($0) } ?? (lc64 ? 0 : nil)
        options.textEncoding = textEncoding ?? (lc64 ? .json : .raw)
        options.rules = quality.rules
        options.dedup = quality.dedupSettings
        options.inputsFrom = inputsFrom
        options.skipMissing = skipMissing
        options.http.connections = connections
        options.scratch = scratch.map { URL(fileURLWithPath: $0) }

        let tok = try tokenizer.load()
        let world = World.shared
        let summary = try Preprocessor.run(inputs: inputs, output: URL(fileURLWithPath: output.out), options: options, tokenizer: tok,
                                           mode: output.mode, world: world,
                                           progress: ProgressReporter(label: "preprocess"))
        guard world.rank == 0 else { return }
        if summary.alreadyComplete {
            print("\(output.out): already complete, nothing to do")
            return
        }
        let index = summary.index
        if let build = index.build { print(funnelSummary(build)) }
        printSplits(index)
        if world.isDistributed {
            print(String(format: "%.2f s on %d ranks", summary.seconds, world.size))
        } else {
            print(String(format: "%.2f s, %.1f MB/s of input", summary.seconds, Double(summary.inputBytes) / max(summary.seconds, 1e-9) / 1e6))
        }
        print("wrote \(output.out)/\(DatasetIndex.fileName)")
    }
}

/// Windows, shards, bytes and compression ratio of each split.
func printSplits(_ index: DatasetIndex) {
    for split in Split.allCases {
        let shards = index.shards.filter { $0.split == split }
        let bytes = shards.reduce(0) { $0 + $1.bytes }
        let windows = index.windows(split: split)
        print("\(split.rawValue): \(windows) windows in \(shards.count) shards, \(formatBytes(bytes))" +
              (bytes > 0 ? String(format: ", %.2fx smaller than raw uint16", Double(windows * windowLength * 2) / Double(bytes)) : ""))
    }
}

/// `12.3 MB`, with decimal units.
func formatBytes(_ bytes: Int) -> String {
    let b = Double(bytes)
    if b >= 1e9 { return String(format: "%.2f GB", b / 1e9) }
    if b >= 1e6 { return String(format: "%.1f MB", b / 1e6) }
    if b >= 1e3 { return String(format: "%.1f kB", b / 1e3) }
    return "\(bytes) B"
}

/// The output options of `preprocess` and `import`: the dataset folder, its shard format, and what to do with a
/// folder that already holds a dataset.
struct DatasetOutputOptions: ParsableArguments {
    @Option(help: "Output dataset folder.")
    var out: String

    @Option(help: "Shard format: hdf5 or zst.")
    var format: String = "hdf5"

    @Option(help: "zstd compression level (1-22).")
    var level: Int = 3

    @Option(help: "Windows per shard file.")
    var shardWindows: Int = 64

    @Flag(help: "Continue an interrupted run in --out (same inputs and options).")
    var resume = false

    @Flag(help: "Replace the dataset already in --out.")
    var force = false

    func validate() throws {
        guard ShardFormat(rawValue: format) != nil else { throw ValidationError("--format must be hdf5 or zst, got '\(format)'") }
        guard !(resume && force) else { throw ValidationError("--resume and --force exclude each other") }
    }

    var shardFormat: ShardFormat { ShardFormat(rawValue: format)! }
    var mode: OutputMode { resume ? .resume : force ? .force : .fresh }
}
