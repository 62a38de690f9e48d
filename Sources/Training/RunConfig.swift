import Foundation
import Model
import Shards
import Streaming
import Support

/// How a model trains: the `train` section of a config file. The training context L is here, not in the model's
/// config: the model takes any length, and `eval` reads L from a checkpoint's config (softmax runs in segments of
/// it; the summaries are ranges of it).
public struct TrainingConfig: Codable, Equatable, Sendable {
    /// Training context length T.
    public var context: Int
    public var batch = 8
    var learningRate = 6e-4
    var minLearningRate = 6e-5
    var warmupSteps = 2000
    public var steps = 10_000
    var weightDecay = 0.1
    var beta1 = 0.9
    var beta2 = 0.95
    var gradClip = 1.0

    enum CodingKeys: String, CodingKey {
        case context, batch, steps, beta1, beta2
        case learningRate = "lr", minLearningRate = "min_lr", warmupSteps = "warmup_steps", weightDecay = "weight_decay"
        case gradClip = "grad_clip"
    }

    init(context: Int) { self.context = context }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        context = try c.decode(Int.self, forKey: .context)
        batch = try c.decodeIfPresent(Int.self, forKey: .batch) ?? batch
        learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? learningRate
        minLearningRate = try c.decodeIfPresent(Double.self, forKey: .minLearningRate) ?? minLearningRate
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? warmupSteps
        steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? steps
        weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? weightDecay
        beta1 = try c.decodeIfPresent(Double.self, forKey: .beta1) ?? beta1
        beta2 = try c.decodeIfPresent(Double.self, forKey: .beta2) ?? beta2
        gradClip = try c.decodeIfPresent(Double.self, forKey: .gradClip) ?? gradClip
    }

    /// Every constraint training `model` relies on (its chunk must divide the context); the error names the model.
    public func validate(for model: ModelConfig) throws {
        func bad(_ m: String) -> LongCrawlError { LongCrawlError("config '\(model.name)': \(m)") }
        guard batch >= 1 else { throw bad("batch must be positive, got \(batch)") }
        guard steps >= 1, warmupSteps >= 0 else { throw bad("steps must be positive and warmup_steps not negative, got \(steps) and \(warmupSteps)") }
        guard context % model.chunk == 0 else { throw bad("chunk (\(model.chunk)) must divide context (\(context))") }
        guard context >= 1, windowLength % context == 0 else { throw bad("context \(context) must divide 65536") }
    }
}

/// A config file, `{"model": {...}, "train": {...}}` (`data/configs/*.json`), and what a run records of it
/// (`RUN/config.json`, `config` in `state.json`). The flat form of earlier versions, every key at the top level and
/// no `model`, is read too.
public struct RunConfig: Codable, Equatable, Sendable {
    public var model: ModelConfig
    public var train: TrainingConfig

    enum CodingKeys: String, CodingKey { case model, train }

    /// With this key true in an encoder's `userInfo`, the flat form is written: the bytes an earlier version
    /// hashed into a `state.json`'s `sha256`.
    static let flatForm = CodingUserInfoKey(rawValue: "longcrawl.flatConfig")!

    public init(model: ModelConfig, train: TrainingConfig) { self.model = model; self.train = train }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if c.contains(.model) || c.contains(.train) {
            // A flat key beside the sections would be dropped without a word, its value (a learning rate) never used.
            let stray = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue).filter { CodingKeys(rawValue: $0) == nil }
            if !stray.isEmpty {
                throw LongCrawlError("key(s) \(stray.sorted().map { "'\($0)'" }.joined(separator: ", ")) outside the \"model\" and \"train\" sections; move each into one")
            }
            model = try c.decode(ModelConfig.self, forKey: .model)
            train = try c.decode(TrainingConfig.self, forKey: .train)
        } else {
            model = try ModelConfig(from: decoder)
            train = try TrainingConfig(from: decoder)
        }
    }

    /// Any key of a JSON object, to find those outside the sections.
    private struct AnyKey: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: Encoder) throws {
        if encoder.userInfo[Self.flatForm] as? Bool == true {
            try model.encode(to: encoder)
            try train.encode(to: encoder)
            return
        }
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(train, forKey: .train)
    }

    public func validate() throws {
        try model.validate()
        try train.validate(for: model)
    }

    /// Loads and validates a config file; errors name the file.
    public static func load(_ url: URL) throws -> RunConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw LongCrawlError("\(url.path): cannot read (\(error.localizedDescription))") }
        let config: RunConfig
        do { config = try JSONDecoder().decode(RunConfig.self, from: data) } catch let e as LongCrawlError {
            throw LongCrawlError("\(url.path): \(e.description)")
        } catch {
            throw LongCrawlError("\(url.path): not a config (\(error))")
        }
        do { try config.validate() } catch let e as LongCrawlError { throw LongCrawlError("\(url.path): \(e.description)") }
        return config
    }
}

/// What `train`, `experiment` and `bench train` change of a config and a run's options: nil (or false) keeps the
/// base's value. `RunConfig.applying` is the one place they are merged, so the same flags give the same run.
public struct RunOverrides: Equatable, Sendable {
    /// Dataset folder, recorded as a standardized path.
    public var data: String?
    /// A variant of the config: the model's name gets `-KIND` when it differs from the config's own (`variantName`).
    public var attention: AttentionKind?
    public var context: Int?
    /// `256:1000,1024:500` (`ContextPhase.parse`): sets the context and the steps.
    public var contextSchedule: String?
    public var batch: Int?
    public var steps: Int?
    /// A token budget instead of steps: steps = tokens / (B x T) rounded up, the warmup at most a tenth of them.
    public var tokens: Int?
    /// Peak learning rate; without `minLR` it also lowers the floor to itself (`--lr 0` changes no weight).
    public var lr: Double?
    public var minLR: Double?
    public var warmup: Int?
    public var accum: Int?
    /// nil with `carryState`: sequential, the only order that continues a row in the next batch.
    public var order: BatchOrder?
    public var seed: UInt64?
    public var saveEvery: Int?
    public var keep: Int?
    /// Held-out windows evaluated during training (a standardized path), every `evalEvery` steps (default: at each save).
    public var evalWindows: String?
    public var evalEvery: Int?
    /// The checkpoint folder the weights come from (already resolved from a run folder), a standardized path.
    public var initFrom: String?
    public var carryState = false
    public var recompute = false
    public var maskSeam = false

    public init() {}
}

extension RunConfig {
    /// The model's name for a variant of `name` with attention `kind`: the name itself for the config's own
    /// attention, `NAME-KIND` for another, so applying it again (a resume) changes nothing.
    static func variantName(_ name: String, own: AttentionKind, kind: AttentionKind) -> String {
        kind == own ? name : name + "-" + kind.rawValue
    }

    /// This config and `options` with `o` applied, validated: an error is one line naming the bad option.
    public func applying(_ o: RunOverrides, to options: TrainOptions) throws -> (config: RunConfig, options: TrainOptions) {
        func check(_ ok: Bool, _ message: @autoclosure () -> String) throws { if !ok { throw LongCrawlError(message()) } }
        try check(o.context == nil || o.contextSchedule == nil, "--context and --context-schedule exclude each other")
        try check(o.steps == nil || o.contextSchedule == nil, "--steps and --context-schedule exclude each other (the phases' steps add up to the run's)")
        try check(o.tokens == nil || (o.steps == nil && o.contextSchedule == nil), "--tokens sets the steps; it excludes --steps and --context-schedule")
        for (name, value, least) in [("--batch", o.batch, 1), ("--steps", o.steps, 1), ("--tokens", o.tokens, 1), ("--warmup", o.warmup, 0)] {
            if let value { try check(value >= least, "\(name) must be \(least == 0 ? "zero or more" : "positive"), got \(value)") }
        }
        for (name, value) in [("--lr", o.lr), ("--min-lr", o.minLR)] {
            if let value { try check(value >= 0 && value.isFinite, "\(name) must be a finite number not negative, got \(value)") }
        }
        let path = { URL(fileURLWithPath: $0).standardizedFileURL.path }
        var c = self, opt = options
        if let data = o.data { opt.dataset = path(data) }
        if let kind = o.attention {
            c.model.name = Self.variantName(model.name, own: model.attention, kind: kind)
            c.model.attention = kind
        }
        if let t = o.context {
            do { try BatchPacker.validate(context: t) } catch let e as LongCrawlError { throw LongCrawlError("--context: \(e.description)") }
            try check(t % c.model.chunk == 0, "--context \(t) is not a multiple of the chunk \(c.model.chunk) of config '\(c.model.name)'")
            c.train.context = t
        }
        if let text = o.contextSchedule {
            let phases = try ContextPhase.parse(text)
            opt.contextSchedule = phases
            c.train.context = phases[0].context
            c.train.steps = phases.map(\.steps).reduce(0, +)
        }
        if let b = o.batch { c.train.batch = b }
        if let s = o.steps { c.train.steps = s }
        if let tokens = o.tokens {
            c.train.steps = (tokens - 1) / (c.train.batch * c.train.context) + 1
            c.train.warmupSteps = min(c.train.warmupSteps, max(1, c.train.steps / 10))
        }
        if let lr = o.lr { c.train.learningRate = lr }
        // A floor above the peak is no schedule.
        if let floor = o.minLR { c.train.minLearningRate = floor } else if let lr = o.lr { c.train.minLearningRate = min(c.train.minLearningRate, lr) }
        if let w = o.warmup { c.train.warmupSteps = w }
        if let a = o.accum { opt.accumulation = a }
        if let order = o.order { opt.order = order } else if o.carryState { opt.order = .sequential }
        if let s = o.saveEvery { opt.saveEvery = s }
        if let k = o.keep { opt.keep = k }
        if let s = o.seed { opt.seed = s }
        if o.recompute { opt.recompute = true }
        if o.maskSeam { opt.maskSeam = true }
        if o.carryState { opt.carryState = true }
        if let source = o.initFrom { opt.initFrom = path(source) }
        if let w = o.evalWindows { opt.evalWindows = path(w) }
        if let e = o.evalEvery { opt.evalEvery = e }
        if opt.evalWindows != nil && opt.evalEvery == nil { opt.evalEvery = opt.saveEvery }
        try c.validate()
        try opt.validate(for: c.model)
        return (c, opt)
    }
}
