import Foundation
import Support

/// How batches walk the rectangle of `B` windows x 65,536 tokens.
public enum BatchOrder: String, Codable, Sendable, CaseIterable {
    /// LongCrawl64's sampling pattern (its article, section 3, and example loader): the epoch's windows form
    /// `G` groups of `B` rows; batch `j` of an epoch is group `j % G` at slot `j / G`, so consecutive batches
    /// come from different documents at the same position, and a document's next slot comes only after every
    /// group has had this one. Consecutive batches are uncorrelated while each batch is a contiguous
    /// rectangle of its rows.
    case longcrawl
    /// Slot after slot of the same group: batch `j` is group `j / S` at slot `j % S` (S = 65,536 / T), so a
    /// recurrent model can carry each row's state into the next batch (`Batch.continues`).
    case sequential
}

/// Where a `BatchPacker` is: enough to rebuild it and continue with exactly the batches it would give next.
public struct PackerCursor: Codable, Equatable, Sendable {
    public var seed: UInt64
    public var rank: Int
    public var world: Int
    public var batchSize: Int
    public var context: Int
    public var order: BatchOrder
    /// The batch handed out next, counted over all epochs (so also the number already handed out).
    public var nextBatch: Int

    public init(seed: UInt64, rank: Int = 0, world: Int = 1, batchSize: Int, context: Int, order: BatchOrder, nextBatch: Int = 0) {
        self.seed = seed; self.rank = rank; self.world = world; self.batchSize = batchSize
        self.context = context; self.order = order; self.nextBatch = nextBatch
    }

    /// `nextBatch` keeps its first key, `batch`: checkpoints and the Python reader's cursors stay as they were.
    enum CodingKeys: String, CodingKey {
        case seed, rank, world, batchSize, context, order
        case nextBatch = "batch"
    }

    /// A batch's place in the rectangle: its epoch, its group of B windows in the epoch's order, and its slot (T
    /// tokens each) in those windows.
    public struct Position: Equatable, Sendable {
        public var epoch: Int, group: Int, slot: Int
        public init(epoch: Int, group: Int, slot: Int) { self.epoch = epoch; self.group = group; self.slot = slot }
    }

    /// Groups of B windows per epoch in this rank's share of a split of `windows` windows.
    public func groups(windows: Int) -> Int { windows / world / batchSize }

    /// Where batch `b` is, in `order` (`BatchOrder`), with `groups` G per epoch.
    func position(of b: Int, groups g: Int) -> Position {
        let s = windowLength / context, epoch = b / (g * s), j = b % (g * s)
        return order == .longcrawl ? Position(epoch: epoch, group: j % g, slot: j / g) : Position(epoch: epoch, group: j / s, slot: j % s)
    }

    /// Where the next batch is, for a split of `windows` windows.
    public func position(windows: Int) -> Position { position(of: nextBatch, groups: groups(windows: windows)) }

    /// The batch at `p`: `position`'s inverse.
    public func batch(at p: Position, windows: Int) -> Int {
        let g = groups(windows: windows), s = windowLength / context
        return p.epoch * g * s + (order == .longcrawl ? p.slot * g + p.group : p.group * s + p.slot)
    }
}

/// One row of a batch: where its tokens come from.
public struct BatchRow: Equatable, Sendable {
    /// Global window id in the split.
    public var window: Int
    /// Token offset of the row's first input in the window.
    public var offset: Int
    /// The row position whose target crosses the seam of a rolled window (`ModelRow.seam`).
    public var seam: Int?
}

/// `B` rows of `T` tokens, each cut from its window by `ModelRow`: inputs, next-token targets and a mask that is 0 for
/// a window's last token, which has no successor, and with `masksSeam` for the target that crosses a rolled window's seam.
public struct Batch: Sendable {
    public var batchSize: Int
    public var context: Int
    public var epoch: Int
    /// [B, T] token ids.
    public var inputs: [Int32]
    /// [B, T] next-token ids (0 where masked).
    public var targets: [Int32]
    /// [B, T] 1 where the target counts, 0 at the window's end (and at each row's seam with `masksSeam`).
    public var mask: [Float]
    public var rows: [BatchRow]
    /// True when every row continues the same row of the previous batch (sequential order, slot > 0).
    public var continues: Bool

    /// SHA-256 of inputs, targets (int32) and mask (float32), each little-endian, in that order: what `pack --digest`
    /// prints and python/longcrawl/packer.py's `Batch.digest` reproduces.
    public var digest: String {
        let digest = SHA256()
        for part in [inputs.map(\.littleEndian), targets.map(\.littleEndian)] { part.withUnsafeBytes { digest.update($0) } }
        mask.map { $0.bitPattern.littleEndian }.withUnsafeBytes { digest.update($0) }
        return digest.hex()
    }
}

/// Cuts the split's windows into batches of `B` rows by `T` tokens, `T` dividing 65,536, in a deterministic,
/// resumable order (see `BatchOrder`): the one way to stream a split (whole windows one by one are `B` = 1,
/// `T` = 65,536). Each epoch uses `epochOrder(seed, epoch)`, this rank's share; windows past the largest multiple
/// of `B` in that share are left out of the epoch. Batches are built ahead on one background thread per core (at most 4)
/// and handed out in order; they do not depend on the number of threads.
public final class BatchPacker {
    public let catalog: WindowCatalog
    public private(set) var cursor: PackerCursor
    /// Groups of B windows per epoch (this rank).
    public let groups: Int
    /// Batches per window: 65,536 / T.
    let slots: Int
    public var batchesPerEpoch: Int { groups * slots }
    /// Mask the target that crosses each row's seam (`BatchRow.seam`); LongCrawl64 trains on it, so off by default.
    public let masksSeam: Bool
    private let prefetcher: Prefetcher<Batch>

    /// Context lengths that divide a window: the powers of two up to 65,536.
    static let validContexts = (0...16).map { 1 << $0 }

    /// One thread per core, at most 4: as many as the default prefetch depth keeps batches in flight, and more
    /// would take cores from the training step that the loader only has to keep ahead of.
    static let defaultWorkers = max(1, min(4, ProcessInfo.processInfo.activeProcessorCount))

    public static func validate(context: Int) throws {
        guard context > 0, windowLength % context == 0 else {
            throw LongCrawlError("context \(context) does not divide \(windowLength); valid: \(validContexts.map(String.init).joined(separator: ", "))")
        }
    }

    /// A packer at the first batch.
    public convenience init(catalog: WindowCatalog, batchSize: Int, context: Int, order: BatchOrder = .longcrawl,
                            seed: UInt64, rank: Int = 0, world: Int = 1, prefetch: Int = 4, cacheBytes: Int = 1 << 30,
                            masksSeam: Bool = false) throws {
        try self.init(catalog: catalog, cursor: PackerCursor(seed: seed, rank: rank, world: world, batchSize: batchSize,
                                                             context: context, order: order, nextBatch: 0),
                      prefetch: prefetch, cacheBytes: cacheBytes, masksSeam: masksSeam)
    }

    /// A packer continuing from `cursor`. `cacheBytes` bounds the decompressed windows kept for reuse (see
    /// `WindowCache`): the LongCrawl64 order visits each window once per slot, so a split that fits is
    /// decompressed once.
    public convenience init(catalog: WindowCatalog, cursor: PackerCursor, prefetch: Int = 4, cacheBytes: Int = 1 << 30,
                            masksSeam: Bool = false) throws {
        try self.init(catalog: catalog, cursor: cursor, prefetch: prefetch, workers: Self.defaultWorkers,
                      cache: WindowCache(bytes: cacheBytes) { try catalog.read($0) }, masksSeam: masksSeam)
    }

    /// A packer on `workers` threads sharing `cache` (tests choose both).
    init(catalog: WindowCatalog, cursor: PackerCursor, prefetch: Int, workers: Int, cache: WindowCache, masksSeam: Bool = false) throws {
        try Self.validate(context: cursor.context)
        guard cursor.batchSize >= 1 else { throw LongCrawlError("batch size must be positive, got \(cursor.batchSize)") }
        guard cursor.world >= 1, cursor.rank >= 0, cursor.rank < cursor.world else {
            throw LongCrawlError("rank \(cursor.rank) is not in 0..<\(cursor.world)")
        }
        let per = catalog.count / cursor.world
        let g = per / cursor.batchSize
        guard g >= 1 else {
            throw LongCrawlError("split '\(catalog.split)' gives \(per) windows per rank, fewer than batch size \(cursor.batchSize)")
        }
        guard cursor.nextBatch >= 0 else { throw LongCrawlError("cursor batch \(cursor.nextBatch) is negative") }
        self.catalog = catalog
        self.cursor = cursor
        self.masksSeam = masksSeam
        groups = g
        slots = windowLength / cursor.context
        let c = cursor
        // Private to each worker: its epoch order and the windows of its last batch (the sequential order reuses
        // one group's windows for S batches in a row). Sendable by hand: worker w alone touches states[w].
        final class WorkerState: @unchecked Sendable { var epoch = -1; var order: [Int] = []; var recent: [Int: [UInt16]] = [:] }
        let states = (0..<max(1, workers)).map { _ in WorkerState() }
        prefetcher = Prefetcher(start: cursor.nextBatch, depth: prefetch, workers: workers) { b, worker in
            let p = c.position(of: b, groups: g)
            let state = states[worker]
            if state.epoch != p.epoch {
                state.epoch = p.epoch
                state.order = epochOrder(count: catalog.count, seed: c.seed, epoch: p.epoch, rank: c.rank, world: c.world)
            }
            let ids = (0..<c.batchSize).map { state.order[p.group * c.batchSize + $0] }
            state.recent = try cache.windows(ids, recent: state.recent)
            return Self.cut(windows: ids.map { state.recent[$0]! }, ids: ids, rolls: try ids.map { try catalog.roll($0) }, slot: p.slot,
                            context: c.context, epoch: p.epoch, continues: c.order == .sequential && p.slot > 0, masksSeam: masksSeam)
        }
    }

    /// The rows of `windows` (of rolls `rolls`) at `slot`, each `ModelRow`'s cut at offset slot x T, in place.
    static func cut(windows: [[UInt16]], ids: [Int], rolls: [Int], slot: Int, context t: Int, epoch: Int, continues: Bool,
                    masksSeam: Bool) -> Batch {
        let b = windows.count, start = slot * t
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        var mask = [Float](repeating: 0, count: b * t)
        var rows: [BatchRow] = []
        rows.reserveCapacity(b)
        inputs.withUnsafeMutableBufferPointer { inp in targets.withUnsafeMutableBufferPointer { tgt in mask.withUnsafeMutableBufferPointer { msk in
            for r in 0..<b {
                let seam = windows[r].withUnsafeBufferPointer { w in
                    ModelRow.cut(w, offset: start, context: t, roll: rolls[r], masksSeam: masksSeam,
                                 inputs: inp.baseAddress! + r * t, targets: tgt.baseAddress! + r * t, mask: msk.baseAddress! + r * t)
                }
                rows.append(BatchRow(window: ids[r], offset: start, seam: seam))
            }
        } } }
        return Batch(batchSize: b, context: t, epoch: epoch, inputs: inputs, targets: targets, mask: mask, rows: rows, continues: continues)
    }

    /// The next batch; a corrupt window throws an error naming the shard file and window.
    public func next() throws -> Batch {
        let batch = try prefetcher.next()
        cursor.nextBatch += 1
        return batch
    }

    /// Every rank's rows of batch `b` (window, offset) in the global batch's order: row j of rank r is global row
    /// j x world + r, since every rank's `epochOrder` deals every world-th window of one shuffle. Computed here, so a
    /// run logs the rows of all ranks without asking them.
    public func globalRows(batch b: Int) -> [(window: Int, offset: Int)] {
        let c = cursor, p = c.position(of: b, groups: groups)
        if shuffled?.epoch != p.epoch { shuffled = (p.epoch, epochShuffle(count: catalog.count, seed: c.seed, epoch: p.epoch)) }
        let start = p.group * c.batchSize * c.world
        return shuffled!.ids[start..<(start + c.batchSize * c.world)].map { ($0, p.slot * c.context) }
    }

    /// The last epoch's shuffle `globalRows` used.
    private var shuffled: (epoch: Int, ids: [Int])?

    /// Seconds `next()` has waited on the background thread so far.
    public var stallSeconds: Double { prefetcher.stallSeconds }
}

