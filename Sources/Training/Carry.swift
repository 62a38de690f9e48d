import Foundation
import Support
import Model
import Streaming

/// One micro-batch's rows carried from step to step (`train --carry-state`): the model's recurrent state of its B
/// rows and where each row's last segment was.
final class SegmentCarry {
    let state: RecurrentState<Float>
    /// Window and offset of each row's last segment.
    private(set) var windows: [Int] = [], offsets: [Int] = []

    init(_ model: Transformer<Float>, batch: Int) { state = RecurrentState(model, batch: batch) }

    /// Readies `state` for `batch`: a batch that continues must hold, row for row, the same windows at the offsets
    /// after the last segment (an error names the first row that does not); one that does not continue (a new
    /// window, the epoch's wrap) empties every row.
    func prepare(_ batch: Batch) throws {
        precondition(batch.batchSize == state.batch, "batch of \(batch.batchSize) rows for a carry of \(state.batch)")
        if batch.continues {
            for (r, row) in batch.rows.enumerated() {
                let last = r < windows.count ? "window \(windows[r]) at \(offsets[r])" : "nothing"
                guard r < windows.count, windows[r] == row.window, offsets[r] + batch.context == row.offset else {
                    throw LongCrawlError("row \(r) (window \(row.window) at \(row.offset)) is marked as continuing but its last segment was \(last)")
                }
            }
        } else {
            for r in 0..<state.batch { state.reset(row: r) }
        }
        windows = batch.rows.map(\.window); offsets = batch.rows.map(\.offset)
    }

    /// Sets the state and rows from a checkpoint's record and tensors (one [B*H, D*(d+1)] per layer).
    func restore(_ record: CarryRecord, states: [[Float]]) {
        for l in states.indices { state.restore(layer: l, states: states[l], positions: record.positions[l]) }
        windows = record.windows; offsets = record.offsets
    }

    /// What a checkpoint keeps of it.
    func record(rank: Int, micro: Int) -> CarryRecord {
        CarryRecord(rank: rank, micro: micro, windows: windows, offsets: offsets,
                    positions: (0..<state.layers).map(state.positions(layer:)))
    }
}

/// A carried state as `state.json` records it: whose rows and where they are, and each layer's rotary positions
/// [B*H] (exact in JSON); the states themselves are `carry.safetensors`'s `rank<r>.micro<m>.layer<l>`.
public struct CarryRecord: Codable, Equatable, Sendable {
    public var rank: Int
    var micro: Int
    public var windows: [Int]
    var offsets: [Int]
    var positions: [[Double]]

    static func tensorName(rank: Int, micro: Int, layer: Int) -> String { "rank\(rank).micro\(micro).layer\(layer)" }
}

/// Where a row of a step is: `epochOrder` deals rank r every ranks-th window, so row j of rank r's packer batch is row
/// q = j x ranks + r of the global batch (the same windows whatever the number of ranks, B x ranks kept), and under
/// `--carry-state` micro-batch m holds the rank's rows m B ..< (m + 1) B.
struct RowLayout {
    let ranks: Int
    /// Rows per micro-batch.
    let rows: Int

    init(ranks: Int, rows: Int) { self.ranks = ranks; self.rows = rows }
    init(_ cursor: PackerCursor, accumulation: Int) { self.init(ranks: cursor.world, rows: cursor.batchSize / accumulation) }

    func global(rank: Int, micro: Int, row: Int) -> Int { (micro * rows + row) * ranks + rank }

    func local(_ q: Int) -> (rank: Int, micro: Int, row: Int) { (q % ranks, q / ranks / rows, q / ranks % rows) }
}

extension Batch {
    /// Rows m B ..< (m + 1) B of a batch of `count` x B rows: micro-batch m of a step under `--carry-state`.
    func micro(_ m: Int, of count: Int) -> Batch {
        let b = batchSize / count, n = b * context, span = (m * n)..<((m + 1) * n)
        var out = self
        out.batchSize = b
        out.inputs = Array(inputs[span]); out.targets = Array(targets[span]); out.mask = Array(mask[span])
        out.rows = Array(rows[(m * b)..<((m + 1) * b)])
        return out
    }
}

/// Carried states and cursors of a resumed run, on as many ranks as it was saved with or another number.
extension StepBatches {
    /// This rank's cursor from the saved ones: its own when the number of ranks is the same; otherwise rank 0's place
    /// (every rank has handed out as many batches) with this rank's share of the same global batch of
    /// rows x ranks (`difference` has checked that B x ranks is unchanged).
    static func cursor(resuming saved: [PackerCursor], rank: Int, world: Int) throws -> PackerCursor {
        if saved.count == world { return saved[rank] }
        var c = saved[0]
        let global = c.batchSize * saved.count
        guard global % world == 0 else { throw LongCrawlError("a batch of \(global) rows over \(saved.count) rank(s) cannot be shared by \(world)") }
        c.rank = rank; c.world = world; c.batchSize = global / world
        return c
    }

    /// Empty carried states for the micro-batches of `cursor`'s batches.
    static func carries(_ model: Transformer<Float>, accumulation: Int, _ cursor: PackerCursor) -> [SegmentCarry] {
        (0..<accumulation).map { _ in SegmentCarry(model, batch: cursor.batchSize / accumulation) }
    }

    /// Sets `carries` to this rank's rows' carried states in `checkpoint`, written with the rows laid out as `saved`
    /// (on as many ranks or another number): each row's state, rotary positions, window and offset go to the rank and
    /// micro-batch that now reads its window.
    static func restore(_ carries: [SegmentCarry], from checkpoint: URL, state: TrainState, saved: RowLayout, now: RowLayout, rank: Int) throws {
        let file = try Checkpoint.loadCarry(checkpoint)
        let records = state.carries ?? []
        var tensors: [String: [Float]] = [:]
        for (m, carry) in carries.enumerated() {
            let layers = carry.state.layers, b = carry.state.batch
            var windows: [Int] = [], offsets: [Int] = []
            var positions = [[Double]](repeating: [], count: layers), states = [[Float]](repeating: [], count: layers)
            for i in 0..<b {
                let (r0, m0, i0) = saved.local(now.global(rank: rank, micro: m, row: i))
                guard let record = records.first(where: { $0.rank == r0 && $0.micro == m0 }), i0 < record.windows.count, i0 < record.offsets.count,
                      record.positions.count == layers else {
                    throw LongCrawlError("\(checkpoint.path): no carried state of rank \(r0), micro-batch \(m0), row \(i0)")
                }
                windows.append(record.windows[i0]); offsets.append(record.offsets[i0])
                for l in 0..<layers {
                    let name = CarryRecord.tensorName(rank: r0, micro: m0, layer: l)
                    let heads = carry.state.positions(layer: l).count / b, n = carry.state.states(layer: l).count / (b * heads)
                    if tensors[name] == nil { tensors[name] = file[name]?.values }
                    guard let values = tensors[name], record.positions[l].count == saved.rows * heads, values.count == saved.rows * heads * n else {
                        throw LongCrawlError("\(checkpoint.path): carried state \(name) is missing or of another size")
                    }
                    positions[l] += record.positions[l][(i0 * heads)..<((i0 + 1) * heads)]
                    states[l] += values[(i0 * heads * n)..<((i0 + 1) * heads * n)]
                }
            }
            carry.restore(CarryRecord(rank: rank, micro: m, windows: windows, offsets: offsets, positions: positions), states: states)
        }
    }
}
