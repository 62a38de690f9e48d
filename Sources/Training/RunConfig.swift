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
    public var learningRate = 6e-4
    public var minLearningRate = 6e-5
    public var warmupSteps = 2000
    public var steps = 10_000
    public var weightDecay = 0.1
    public var beta1 = 0.9
    public var beta2 = 0.95
    public var gradClip = 1.0

    enum CodingKeys: String, CodingKey {
        case context, batch, steps, beta1, beta2
        case learningRate = "lr", minLearningRate = "min_lr", warmupSteps = "warmup_steps", weightDecay = "weight_decay"
        case gradClip = "grad_clip"
    }

    public init(context: Int) { self.context = context }

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
