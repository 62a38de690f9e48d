import Foundation
import Model
import Streaming
import Support
import Tensor

/// `state.json` of a checkpoint: everything but the tensors needed to continue exactly.
public struct TrainState: Codable, Equatable, Sendable {
    /// 1 (absent): the first format; 2: `options.text_encoding`. Written as the newest; every earlier one opens.
    static let currentVersion = 2
    var version: Int? = TrainState.currentVersion
    public var step: Int
    public var config: RunConfig
    public var options: TrainOptions
    /// Each rank's data cursor, in rank order: the packer rebuilt from it gives exactly the batches the rank
    /// would have taken next.
    var cursors: [PackerCursor]
    /// The seed the model was initialized from (`options.seed`). Training draws no random numbers after
    /// initialization (no dropout; the data order is the cursor's), so this is all the generator state there is.
    var initSeed: UInt64
    public var tokens: Int
    var elapsed: Double
    /// The last step's metrics.
    public var last: StepMetrics?
    /// Under `--carry-state`, every rank's micro-batches' carried states (the tensors in `carry.safetensors`), and
    /// their size in bytes.
    public var carries: [CarryRecord]?
    public var carryBytes: Int?
    /// SHA-256 of `model.safetensors` and `optimizer.safetensors` by name: safetensors has no checksum of its own,
    /// and a flipped byte in a tensor would load as a wrong value. Nil in checkpoints written before it existed.
    var files: [String: String]?
    /// SHA-256 of this state as compact JSON with sorted keys and this field left out, so a changed value here
    /// (a step, a cursor) is refused too while whitespace stays harmless.
    var sha256: String?

    /// `initSeed` keeps its first key, `rng`: the digest (`sha256`) covers the keys, so a new one would fail the check
    /// of every state written before.
    enum CodingKeys: String, CodingKey {
        case version, step, config, options, cursors, tokens, elapsed, last, files, sha256, carries
        case initSeed = "rng", carryBytes = "carry_bytes"
    }

    /// The digest `sha256` holds.
    /// `flatConfig`: as a version before the two-section config wrote it (`RunConfig.flatForm`).
    func digest(flatConfig: Bool = false) throws -> String {
        var plain = self
        plain.sha256 = nil
        let encoder = JSONEncoder.sorted
        encoder.userInfo[RunConfig.flatForm] = flatConfig
        return Support.sha256(try encoder.encode(plain))
    }
}

/// A checkpoint folder: `model.safetensors` (parameters by name), `optimizer.safetensors` (AdamW moments
/// `<name>.exp_avg`, `<name>.exp_avg_sq`, and the step in the metadata) and `state.json`.
public enum Checkpoint {
    static let modelFile = "model.safetensors", optimizerFile = "optimizer.safetensors", stateFile = "state.json"
    /// The carried states of a `--carry-state` run.
    static let carryFile = "carry.safetensors"

    /// `RUN/checkpoints/step-000100`.
    static func folder(in run: URL, step: Int) -> URL {
        run.appendingPathComponent("checkpoints").appendingPathComponent(String(format: "step-%06d", step))
    }

    /// `RUN/checkpoints/best`: the checkpoint with the lowest held-out loss so far (not one of the last K).
    static func best(in run: URL) -> URL { run.appendingPathComponent("checkpoints/best") }

    /// Complete checkpoints of a run, oldest first (a folder being written has a hidden temporary name).
    public static func all(in run: URL) -> [URL] {
        let dir = run.appendingPathComponent("checkpoints")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasPrefix("step-") && !$0.hasSuffix(".tmp") }.sorted().map { dir.appendingPathComponent($0) }
    }

    /// A checkpoint folder as given, or the newest checkpoint of a run folder.
    public static func resolve(_ url: URL) throws -> URL {
        if FileManager.default.fileExists(atPath: url.appendingPathComponent(stateFile).path) { return url }
        guard let newest = try newest(in: url) else { throw LongCrawlError("\(url.path): no checkpoint (no \(stateFile) here or under checkpoints/)") }
        return newest
    }

    /// A checkpoint opened for use: where it is and its state, read and checked once; its model on demand (`eval`
    /// checks every checkpoint given before it loads the first model).
    public struct Opened {
        public let url: URL
        public let state: TrainState
        /// A model of the checkpoint's config with its weights.
        public func model() throws -> Transformer<Float> { try Checkpoint.loadModel(url, state: state) }
    }

    /// A checkpoint folder, or a run folder's newest checkpoint (`resolve`), with its state: the one way `eval`,
    /// `probe`, `generate` and `experiment` open one.
    public static func open(_ url: URL) throws -> Opened {
        let checkpoint = try resolve(url)
        return Opened(url: checkpoint, state: try loadState(checkpoint))
    }

    /// The newest checkpoint of a run, refused if it is a symlink that leads out of the run folder.
    static func newest(in run: URL) throws -> URL? {
        guard let newest = all(in: run).last else { return nil }
        guard contained("checkpoints/" + newest.lastPathComponent, in: run) != nil else {
            throw LongCrawlError("\(newest.path): checkpoint folder leads outside the run folder \(run.path) (a symlink out)")
        }
        return newest
    }

    /// A file of a checkpoint, refused if it is a symlink that leads out of the checkpoint folder.
    static func file(_ name: String, of checkpoint: URL) throws -> URL {
        let url = checkpoint.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else { throw LongCrawlError("\(url.path): missing from the checkpoint") }
        guard let inside = contained(name, in: checkpoint) else {
            throw LongCrawlError("\(url.path): leads outside the checkpoint folder (a symlink out)")
        }
        return inside
    }

    /// Writes the three files into a temporary folder and renames it into place, then deletes all but the
    /// newest `keep` checkpoints.
    static func save(model: Transformer<Float>, optimizer: AdamW<Float>, state: TrainState, carry: [(String, Tensor<Float>)] = [],
                            run: URL, keep: Int) throws {
        try write(model: model, optimizer: optimizer, state: state, carry: carry, to: folder(in: run, step: state.step))
        for old in all(in: run).dropLast(max(1, keep)) { try? FileManager.default.removeItem(at: old) }
    }

    /// The three files (four with `carry`) into a temporary folder, then put in the place of `final`, which holds the
    /// old or the new checkpoint at every instant (`checkpoints/best` is replaced while the run goes on).
    public static func write(model: Transformer<Float>, optimizer: AdamW<Float>, state: TrainState, carry: [(String, Tensor<Float>)] = [],
                             to final: URL) throws {
        let tmp = AtomicFile.temporaryURL(for: final)
        let fm = FileManager.default
        try? fm.removeItem(at: tmp)
        try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
        // A failed save (a full disk) leaves nothing behind to hold the space.
        do { try write(model: model, optimizer: optimizer, state: state, carry: carry, into: tmp) } catch { try? fm.removeItem(at: tmp); throw error }
        if fm.fileExists(atPath: final.path) { return try AtomicFile.replace(final, with: tmp) }
        do { try fm.moveItem(at: tmp, to: final) } catch { throw LongCrawlError("\(final.path): cannot rename checkpoint into place (\(error.localizedDescription))") }
    }

    private static func write(model: Transformer<Float>, optimizer: AdamW<Float>, state: TrainState, carry: [(String, Tensor<Float>)],
                              into tmp: URL) throws {
        // Every tensor is a view into a flat block: written from there, not copied first.
        let params = model.parameters
        try SafetensorsFile.write(params.map { ($0.name, $0.value) }, metadata: ["format": "pt", "config": state.config.model.name, "step": String(state.step)],
                                  to: tmp.appendingPathComponent(modelFile))
        try SafetensorsFile.write(moments(optimizer, params), metadata: ["format": "pt", "step": String(optimizer.step)],
                                  to: tmp.appendingPathComponent(optimizerFile))
        if !carry.isEmpty { try SafetensorsFile.write(carry, metadata: ["format": "pt", "step": String(state.step)], to: tmp.appendingPathComponent(carryFile)) }
        var state = state
        state.files = try ([modelFile, optimizerFile] + (carry.isEmpty ? [] : [carryFile])).reduce(into: [:]) {
            $0[$1] = try sha256(of: tmp.appendingPathComponent($1)).hex
        }
        state.sha256 = try state.digest()
        try AtomicFile.writeJSON(state, to: tmp.appendingPathComponent(stateFile))
    }

    public static func loadState(_ checkpoint: URL) throws -> TrainState {
        let url = try file(stateFile, of: checkpoint)
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw LongCrawlError("\(url.path): cannot read (\(error.localizedDescription))") }
        let state: TrainState
        do { state = try JSONDecoder().decode(TrainState.self, from: data) } catch { throw LongCrawlError("\(url.path): not a checkpoint state (\(error))") }
        if let saved = state.sha256, saved != (try state.digest()), saved != (try state.digest(flatConfig: true)) {
            throw LongCrawlError("\(url.path): checksum mismatch (a value was changed after it was written)")
        }
        // Every earlier version reads as it is (its absent keys decode as their defaults); a newer one is refused.
        guard (1...TrainState.currentVersion).contains(state.version ?? 1) else {
            throw LongCrawlError("\(url.path): checkpoint version \(state.version!), this build reads 1 to \(TrainState.currentVersion)")
        }
        return state
    }

    /// Reads a tensor file of a checkpoint, checked against the SHA-256 its state records.
    static func tensors(_ name: String, of checkpoint: URL) throws -> (URL, SafetensorsFile) {
        let url = try file(name, of: checkpoint)
        if let expected = try loadState(checkpoint).files?[name], try sha256(of: url).hex != expected {
            throw LongCrawlError("\(url.path): SHA-256 differs from the one in \(stateFile) (the file is damaged)")
        }
        return (url, try SafetensorsFile(contentsOf: url))
    }

    /// A model of the checkpoint's config (`state`, from `loadState`) with the checkpoint's weights.
    static func loadModel(_ checkpoint: URL, state: TrainState) throws -> Transformer<Float> {
        let model = Transformer<Float>(config: state.config.model, seed: 0)
        try loadModel(checkpoint, into: model)
        return model
    }

    /// Copies the parameters of `model.safetensors` into `model`: every tensor present with its shape.
    static func loadModel(_ checkpoint: URL, into model: Transformer<Float>) throws {
        let (url, file) = try tensors(modelFile, of: checkpoint)
        try copy(file, url, into: model.parameters.map { ($0.name, $0.value) }, configName: model.config.name)
    }

    /// Each parameter's slices of AdamW's moments with their names in `optimizer.safetensors`, in file order.
    static func moments(_ optimizer: AdamW<Float>, _ parameters: ParameterBlocks<Float>) -> [(String, Tensor<Float>)] {
        parameters.flatMap { [($0.name + ".exp_avg", $0.view(of: optimizer.m)), ($0.name + ".exp_avg_sq", $0.view(of: optimizer.v))] }
    }

    /// `carry.safetensors` of a checkpoint, checked against its SHA-256.
    static func loadCarry(_ checkpoint: URL) throws -> SafetensorsFile { try tensors(carryFile, of: checkpoint).1 }

    /// Restores AdamW's moments and step from `optimizer.safetensors`.
    static func loadOptimizer(_ checkpoint: URL, into optimizer: AdamW<Float>, parameters: ParameterBlocks<Float>) throws {
        let (url, file) = try tensors(optimizerFile, of: checkpoint)
        try copy(file, url, into: moments(optimizer, parameters), configName: nil)
        guard let step = file.metadata["step"].flatMap(Int.init) else { throw LongCrawlError("\(url.path): no step in the metadata") }
        optimizer.step = step
    }

    private static func copy(_ file: SafetensorsFile, _ url: URL, into slots: [(String, Tensor<Float>)], configName: String?) throws {
        let expected = Set(slots.map(\.0))
        if let extra = file.tensors.first(where: { !expected.contains($0.name) }) {
            throw LongCrawlError("\(url.path): tensor \(extra.name) is not in config '\(configName ?? "?")' (a checkpoint of another config?)")
        }
        for (name, tensor) in slots {
            guard let entry = file[name] else { throw LongCrawlError("\(url.path): tensor \(name) is missing (a checkpoint of another config?)") }
            guard entry.shape == tensor.shape else {
                throw LongCrawlError("\(url.path): tensor \(name) has shape \(entry.shape), the model expects \(tensor.shape) (a checkpoint of another config?)")
            }
            // A NaN or infinity would only surface as NaN losses much later.
            if let bad = entry.values.firstIndex(where: { !$0.isFinite }) {
                throw LongCrawlError("\(url.path): tensor \(name) holds \(entry.values[bad]) at element \(bad)")
            }
            entry.values.withUnsafeBufferPointer { tensor.data.update(from: $0.baseAddress!, count: tensor.count) }
        }
    }
}
