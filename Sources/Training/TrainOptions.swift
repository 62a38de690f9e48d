import Model
import Streaming
import Support

/// Options of a training run that its config (`RunConfig`) does not hold.
public struct TrainOptions: Codable, Equatable, Sendable {
    /// Dataset folder (from `longcrawl preprocess`).
    var dataset: String
    public var order: BatchOrder = .longcrawl
    /// Micro-batches whose gradients are averaged into one step.
    public var accumulation = 1
    public var saveEvery = 100
    /// Checkpoints kept; older ones are deleted after a newer one is complete.
    public var keep = 3
    /// Seeds the model's initialization and the data order.
    public var seed: UInt64 = 1
    /// Rebuild each block's MLP half in backward instead of storing its activations (same gradients, less memory).
    public var recompute = false
    /// Held-out windows (from `longcrawl sample`) evaluated at the training context every `evalEvery` steps and at
    /// the end, into `RUN/eval.jsonl`; the best checkpoint by that loss is kept as `checkpoints/best`.
    public var evalWindows: String?
    public var evalEvery: Int?
    /// true: training batches mask the target that crosses each rolled window's seam (`BatchRow.seam`); nil (left
    /// out of the JSON, as in runs from before the option): LongCrawl64's way, every target counts.
    public var maskSeam: Bool?
    /// Each row starts from the attention state its previous segment ended with (`--carry-state`, sequential order,
    /// sympow variants); nil is false (a key absent from earlier runs).
    public var carryState: Bool?
    /// The checkpoint folder the run started from (`--init-from`): its weights, fresh moments, step 0.
    public var initFrom: String?
    /// T and steps per phase (`--context-schedule`), T changing only at window boundaries with the tokens per step
    /// kept; nil: the config's context throughout.
    public var contextSchedule: [ContextPhase]?
    /// `.json` when the data's tokens encode LongCrawl64's JSON-escaped text (so `generate` escapes its prompt and
    /// unescapes its output); nil for raw text (a key absent from earlier runs). Set from the dataset by `Trainer`.
    public var textEncoding: TextEncoding?

    public init(dataset: String) { self.dataset = dataset }

    public var carries: Bool { carryState == true }

    /// Every constraint of the options, alone and with `model`; an error names the option.
    public func validate(for model: ModelConfig) throws {
        for (name, value) in [("--accum", accumulation), ("--save-every", saveEvery), ("--keep", keep), ("--eval-every", evalEvery ?? 1)] where value < 1 {
            throw LongCrawlError("\(name) must be positive, got \(value)")
        }
        if carries {
            guard order == .sequential else { throw LongCrawlError("--carry-state needs --order sequential (the longcrawl order does not continue a row in the next batch)") }
            guard model.attention.carriesState else { throw LongCrawlError("--carry-state: \(model.attention.rawValue) has no state of fixed size to carry (its state is its whole history)") }
        }
    }

    /// `dataset` keeps its first key, `data`: `options.json` and `state.json` stay as they were.
    enum CodingKeys: String, CodingKey {
        case dataset = "data", order, accumulation, keep, seed, recompute
        case saveEvery = "save_every", evalWindows = "eval_windows", evalEvery = "eval_every", maskSeam = "mask_seam"
        case carryState = "carry_state", initFrom = "init_from", contextSchedule = "context_schedule"
        case textEncoding = "text_encoding"
    }
}
