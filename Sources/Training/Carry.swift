import Foundation
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
                    throw TrainingError("row \(r) (window \(row.window) at \(row.offset)) is marked as continuing but its last segment was \(last)")
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
    public var micro: Int
    public var windows: [Int]
    public var offsets: [Int]
    public var positions: [[Double]]

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
    init(_ cursor: PackerCursor, _ options: TrainOptions) { self.init(ranks: cursor.world, rows: cursor.batchSize / options.accumulation) }

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
