import Foundation
import Support
import Tokenizer

/// A rule of the document stage: keeps or drops one document from its text and id alone, with no state across
/// documents, so any thread may apply it, in any order, again after a `--resume`, on any rank. A dropped document
/// is counted under `dropped_<counter>` in `index.json` (the rule's name, unless it has several tests); the first
/// test a document fails is the one counted. Rules run in the order given (cheapest first), after the readers' own
/// drops (unreadable, empty, too short by bytes) and before the tokenizer; a rule that reads the whole text runs
/// after the tokenizer's drop (`afterTokenizer`).
public protocol DocumentRule: Sendable {
    /// Names the rule's counter (`dropped_<name>`) and its options (`<name>.<option>`) in `index.json`.
    var name: String { get }
    /// Every setting that changes what the rule keeps, rendered as strings: recorded in the build record, so a
    /// `--resume` with other settings is refused.
    var options: [String: String] { get }
    /// True to keep the document.
    func keeps(_ document: Document) -> Bool
    /// The names of the rule's counters, in the order it tests them: `[name]` for a rule of one test; several for
    /// a rule that computes something once and tests it several ways (the quality rules), each drop counted apart.
    var counters: [String] { get }
    /// Nil to keep the document, else the counter (one of `counters`) of the first test it fails.
    func drop(_ document: Document) -> String?
    /// True for a rule that reads the whole text: it runs after the tokenizer's drop (too few tokens), which reads
    /// at most a window's worth of text a window, so a document too short in tokens never pays for it.
    var afterTokenizer: Bool { get }
    /// `drop` with what the stages have computed from the text so far (a rule that reads RPv2's signals takes
    /// them from there, and leaves them for the rules and the dedup after it).
    func drop(_ document: Document, analysis: TextAnalysis) -> String?
}

extension DocumentRule {
    public var counters: [String] { [name] }
    public var afterTokenizer: Bool { false }
    public func drop(_ document: Document) -> String? { keeps(document) ? nil : name }
    public func drop(_ document: Document, analysis: TextAnalysis) -> String? { drop(document) }
}

/// What the document stages compute from one text, each at most once: RPv2's signals (its normalized words) are
/// read by the quality rules and by near dedup's MinHash, and whichever comes first computes them. One thread
/// owns an analysis, from the rules to the fingerprint.
public final class TextAnalysis {
    public let text: [UInt8]
    public init(_ text: [UInt8]) { self.text = text }
    public private(set) lazy var signals = QualitySignals(utf8: text)
}

/// The stages between reading and writing, in the order a record meets them: the readers' drops, the rules, the
/// tokenizer (documents of enough bytes but fewer tokens than their windows need), the rules that read the whole
/// text, dedup. Names the funnel's counters in that order.
struct DocumentStage: Sendable {
    var rules: [DocumentRule]
    /// UTF-8 bytes a text needs to give its windows: 65,536 tokens a window, each token at least one byte.
    var minTextBytes: Int
    /// Dedup, after the tokenizer's drop (nil: none).
    var dedup: DedupSettings? = nil
    /// RedPajama-v2 input: its duplicate flags drop documents after the readers' drops.
    var rpv2 = false
    /// `--skip-missing`: missing inputs are counted first.
    var skipMissing = false

    /// The tokenizer's drop: a text long enough in bytes that gives fewer tokens than one window.
    static let tooFewTokens = DropReason("too_few_tokens")
    /// Dedup's drop: a later copy of a kept document.
    static let duplicate = DropReason("duplicate")

    /// The rules run before the tokenizer, and those that read the whole text, after its drop (`Tokenizing`).
    var rulesBeforeTokenizer: [DocumentRule] { rules.filter { !$0.afterTokenizer } }
    var rulesAfterTokenizer: [DocumentRule] { rules.filter(\.afterTokenizer) }

    /// Counter names in funnel order, from `records` to `kept`.
    var funnel: [String] {
        var reasons: [DropReason] = (skipMissing ? [.missing] : []) + [.unreadable, .empty, .tooShort] + (rpv2 ? [.duplicateRPv2] : [])
        reasons += rulesBeforeTokenizer.flatMap(\.counters).map(DropReason.init)
        reasons += [Self.tooFewTokens] + rulesAfterTokenizer.flatMap(\.counters).map(DropReason.init)
        reasons += dedup == nil ? [] : [Self.duplicate]
        return ["records"] + reasons.map(\.counter) + ["kept"]
    }

    /// The rules' options for the build record, as `<rule>.<option>`.
    var record: [String: String] {
        var out: [String: String] = [:]
        for rule in rules { for (key, value) in rule.options { out[rule.name + "." + key] = value } }
        return out.merging(dedup?.record ?? [:]) { $1 }
    }

    /// Checks that rule names are usable and distinct (they name counters and options).
    func validate() throws {
        var seen = Set(["missing", "unreadable", "empty", "too_short", "too_few_tokens", "duplicate", "duplicate_rpv2"])
        var names: Set = ["dedup"]
        for rule in rules {
            guard names.insert(rule.name).inserted else { throw LongCrawlError("two document stages are named '\(rule.name)'") }
            for name in Set([rule.name] + rule.counters) {
                guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                    throw LongCrawlError("document rule name '\(name)' must be letters, digits and '_'")
                }
            }
            for counter in rule.counters {
                guard seen.insert(counter).inserted else { throw LongCrawlError("two document stages are named '\(counter)'") }
            }
        }
    }

    /// The record after the rules before the tokenizer (a document that fails one becomes that rule's drop), and a
    /// kept document's analysis, for the tokenizer's stage.
    func apply(_ record: CorpusRecord) -> (record: CorpusRecord, analysis: TextAnalysis?) {
        guard case .document(let d) = record else { return (record, nil) }
        let analysis = TextAnalysis(d.text)
        return Self.apply(rulesBeforeTokenizer, d, analysis).map { (.dropped($0), nil) } ?? (record, analysis)
    }

    /// The drop of the first of `rules` that `d` fails, if any.
    static func apply(_ rules: [DocumentRule], _ d: Document, _ analysis: TextAnalysis) -> DroppedRecord? {
        for rule in rules {
            if let counter = rule.drop(d, analysis: analysis) {
                return DroppedRecord(ordinal: d.ordinal, origin: d.origin, reason: DropReason(counter), detail: "", bytes: d.text.count)
            }
        }
        return nil
    }
}

/// The tokenizer's stage, run on the feed's threads: each kept document's tokens, as many as its windows need,
/// then the rules that read the whole text, then its dedup fingerprint.
struct Tokenizing: Sendable {
    let tokenizer: GPT2Tokenizer
    /// The document stage's rules that run after the tokenizer's drop.
    let rules: [DocumentRule]
    /// Tokens the windows need; nil for all of them (`--windows-per-doc all`).
    let needed: Int?
    /// Records numbered below this (before a `--resume`'s restart point) are read again but not tokenized.
    let from: Int
    /// Called before each document is tokenized (a test hook).
    let hook: (@Sendable (Document) -> Void)?
    /// What the tokenizer reads of each text.
    let encoding: TextEncoding

    /// With dedup (and no distributed plan, which has them already), each document with a window's tokens also
    /// gets its fingerprint here, on the feed's threads.
    let dedup: DedupSettings?

    /// A document's tokens, as many as its windows need, and its dedup fingerprint (empty without dedup or a
    /// window); the document dropped (and no tokens) if a rule after the tokenizer drops it. `analysis` is what the
    /// rules before computed from its text.
    func apply(_ document: Document, analysis: TextAnalysis? = nil, memo: inout TokenizerMemo)
        -> (record: CorpusRecord, tokens: [UInt16], fingerprint: [UInt64]) {
        hook?(document)
        let t = encodePrefix(document.text, needed: needed, tokenizer: tokenizer, memo: &memo, encoding: encoding)
        guard t.count >= windowLength else { return (.document(document), t, []) }
        let analysis = analysis ?? TextAnalysis(document.text)
        if let dropped = DocumentStage.apply(rules, document, analysis) { return (.dropped(dropped), [], []) }
        return (.document(document), t, dedup?.fingerprint(analysis) ?? [])
    }
}

/// Reads the input parts on `workers` threads, each part on one thread through the document stage: the rules, then
/// the tokenizer (each thread with its own `TokenizerMemo`); hands back every record in input order, so the result
/// is that of one thread. At most `workers + 1` parts are read ahead of the consumer, each holding at most two
/// pieces of `pieceBytes` of kept text (or `pieceRecords` records) in memory.
/// Sendable by hand: its queues, counters and `stopped` are touched only under `condition`; the rest is set in `init`.
final class DocumentFeed: @unchecked Sendable {
    /// Consecutive records of one part.
    struct Piece {
        var part: Int
        var records: [CorpusRecord]
        /// Each record's tokens: nil for a record dropped before the tokenizer, and for a document numbered before `Tokenizing.from` or
        /// read before its number was known (only under `--resume`).
        var tokens: [[UInt16]?]
        /// Each record's dedup fingerprint (`Tokenizing.apply`); empty where it has none.
        var fingerprints: [[UInt64]]
        /// Bytes of the part's file consumed when the piece was cut.
        var bytesRead: Int
        /// The part's last piece.
        var last: Bool
    }

    private let parts: [InputPart]
    private let settings: ReadSettings
    private let stage: DocumentStage
    private let tokenizing: Tokenizing
    private let condition = NSCondition()
    /// Per part: pieces read and not yet taken.
    private var queues: [[Piece]]
    /// Records of each part read to its end, and the number of the first record of parts 0...k while known.
    private var partRecords: [Int?]
    private var firstRecord = [0]
    private var nextPart = 0
    /// The part the consumer reads now.
    private var consumerPart = 0
    private var stopped = false
    private let ahead: Int
    private let pieceBytes: Int, pieceRecords: Int

    init(reader: CorpusReader, stage: DocumentStage, tokenizing: Tokenizing, workers: Int, pieceBytes: Int = 32 << 20,
         pieceRecords: Int = 4096) {
        parts = reader.parts
        settings = reader.settings
        self.stage = stage
        self.tokenizing = tokenizing
        queues = Array(repeating: [], count: parts.count)
        partRecords = Array(repeating: nil, count: parts.count)
        // Each thread holds at most one connection: more threads than connections could all wait on parts ahead of
        // the consumer's while its part waits for a connection.
        let workers = reader.hasRemote ? min(workers, settings.http.limiter.limit) : workers
        ahead = workers + 1
        self.pieceBytes = pieceBytes; self.pieceRecords = pieceRecords
        for _ in 0..<min(workers, parts.count) {
            let thread = Thread { [self] in work() }
            // JSON nesting recurses: room for the scanner's depth limit whatever the platform's default.
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// Ends the workers after their current piece (on an error, or when the consumer is done). The consumer must
    /// call it: each worker holds the feed until it ends, so no deinit could.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// The next piece in input order, or nil after the last part's last piece.
    func next() -> Piece? {
        condition.lock()
        defer { condition.unlock() }
        while consumerPart < parts.count {
            while queues[consumerPart].isEmpty { condition.wait() }
            let piece = queues[consumerPart].removeFirst()
            if piece.last { consumerPart += 1 }
            condition.broadcast()
            return piece
        }
        return nil
    }

    private func work() {
        var memo = TokenizerMemo()
        while true {
            condition.lock()
            while !stopped, nextPart < parts.count, nextPart >= consumerPart + ahead { condition.wait() }
            guard !stopped, nextPart < parts.count else { condition.unlock(); return }
            let p = nextPart
            nextPart += 1
            condition.unlock()
            let cursor = PartCursor(parts[p], settings)
            var records: [CorpusRecord] = [], tokens: [[UInt16]?] = [], fingerprints: [[UInt64]] = [], bytes = 0, count = 0
            // The number of the part's first record: needed only to skip what a --resume does not tokenize.
            var first: Int? = tokenizing.from == 0 ? 0 : nil
            while true {
                let record = cursor.next()
                if let record {
                    var (r, analysis) = stage.apply(record)
                    var t: [UInt16]?, f: [UInt64] = []
                    if case .document(let d) = r {
                        bytes += d.text.count
                        if first == nil { first = firstRecord(of: p) }
                        if let first, first + count >= tokenizing.from { (r, t, f) = tokenizing.apply(d, analysis: analysis, memo: &memo) }
                    }
                    records.append(r)
                    tokens.append(t)
                    fingerprints.append(f)
                    count += 1
                    guard records.count >= pieceRecords || bytes >= pieceBytes else { continue }
                }
                let piece = Piece(part: p, records: records, tokens: tokens, fingerprints: fingerprints, bytesRead: cursor.bytesRead,
                                  last: record == nil)
                guard deliver(piece, partRecords: count) else { return }
                if record == nil { break }
                records = []; tokens = []; fingerprints = []; bytes = 0
            }
        }
    }

    /// The number of part `p`'s first record over all parts, once every part before it has been read to its end.
    private func firstRecord(of p: Int) -> Int? {
        condition.lock()
        defer { condition.unlock() }
        while firstRecord.count <= p, let n = partRecords[firstRecord.count - 1] { firstRecord.append(firstRecord.last! + n) }
        return firstRecord.count > p ? firstRecord[p] : nil
    }

    /// Queues a piece, waiting while two of its part's wait already (the consumer's part never waits); false once
    /// stopped. The part's last piece records how many records the part had (`partRecords`).
    private func deliver(_ piece: Piece, partRecords count: Int) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !stopped, piece.part != consumerPart, queues[piece.part].count >= 2 { condition.wait() }
        guard !stopped else { return false }
        queues[piece.part].append(piece)
        if piece.last { partRecords[piece.part] = count }
        condition.broadcast()
        return true
    }
}

/// One record as the writer takes it, numbered in input order, every stage before dedup done: a drop, or a document
/// with its tokens (fewer than a window: the tokenizer's drop, counted by the writer) and its dedup fingerprint.
enum Outcome {
    case dropped(DroppedRecord)
    case document(Tokenized)

    struct Tokenized {
        var ordinal: Int
        var id: String
        var part: Int
        /// UTF-8 bytes of its text (the length histogram).
        var textBytes: Int
        var tokens: [UInt16]
        /// Empty without dedup, and after a scratch's replay (its dedup is planned).
        var fingerprint: [UInt64]
    }

    var ordinal: Int {
        switch self {
        case .dropped(let d): return d.ordinal
        case .document(let d): return d.ordinal
        }
    }
}

/// Consecutive outcomes in input order, and the input bytes read when the last was had (for progress).
struct Outcomes {
    var records: [Outcome]
    var progressBytes: Int
}

/// Where the writer takes its outcomes from: the inputs (`FeedOutcomes`), or a first pass's scratch (`ScratchReader`).
protocol OutcomeSource: AnyObject {
    /// The next piece, or nil after the last.
    func next() throws -> Outcomes?
    /// Records numbered so far (all of them once `next` has returned nil).
    var records: Int { get }
    func stop()
}

/// The inputs' outcomes: the document feed's pieces numbered in input order, the records before `restart` left out
/// (read again, not tokenized), a document the feed read before its number was known tokenized here.
final class FeedOutcomes: OutcomeSource {
    private let feed: DocumentFeed
    private let parts: [InputPart]
    private let tokenizing: Tokenizing
    private let restart: Int
    private(set) var records = 0
    private var bytesDone = 0
    private var memo = TokenizerMemo()

    init(reader: CorpusReader, stage: DocumentStage, workers: Int, restart: Int, tokenizing: Tokenizing) {
        feed = DocumentFeed(reader: reader, stage: stage, tokenizing: tokenizing, workers: workers)
        parts = reader.parts
        self.tokenizing = tokenizing; self.restart = restart
    }

    func stop() { feed.stop() }

    func next() -> Outcomes? {
        guard let piece = feed.next() else { return nil }
        var out: [Outcome] = []
        for (i, var record) in piece.records.enumerated() {
            record.ordinal = records
            records += 1
            guard record.ordinal >= restart else { continue }
            var (tokens, fingerprint) = (piece.tokens[i] ?? [], piece.fingerprints[i])
            if piece.tokens[i] == nil, case .document(let d) = record { (record, tokens, fingerprint) = tokenizing.apply(d, memo: &memo) }
            switch record {
            case .dropped(let d): out.append(.dropped(d))
            case .document(let d):
                out.append(.document(.init(ordinal: d.ordinal, id: d.id, part: d.part, textBytes: d.text.count, tokens: tokens, fingerprint: fingerprint)))
            }
        }
        // A URL's size is known once it is read: what its reader consumed.
        if piece.last { bytesDone += parts[piece.part].kind == .remote ? piece.bytesRead : parts[piece.part].bytes }
        return Outcomes(records: out, progressBytes: bytesDone + (piece.last ? 0 : piece.bytesRead))
    }
}
