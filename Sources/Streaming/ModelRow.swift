import Shards
import Support

/// The one rule that turns a window's tokens into a row of the model, shared by the packer (`BatchPacker`), `eval`
/// and the trainer's held-out evaluation (`Evaluator`) and `sample` (`EvalWindowSampler`): from `window` (a window's
/// tokens, or a sampled row's), the row of `context` T tokens at `offset`:
/// - inputs `window[offset ..< offset + T]`;
/// - targets `window[offset + 1 ..< offset + T + 1]`, 0 and masked past the window's end (only a window's last token
///   has no successor);
/// - the seam: the position whose target crosses a rolled window's seam (`roll` k > 0 is the column of `window`
///   holding the document's first token, so its input is column k - 1, the document's last kept token):
///   `k - 1 - offset`, nil when k = 0 or outside the row; its target masked with `masksSeam`.
/// python/longcrawl/packer.py is its twin, checked against one numpy reference with this (`RowContractTests`).
public struct ModelRow: Equatable, Sendable {
    /// [T] token ids.
    public var inputs: [Int32]
    /// [T] next-token ids (0 where there is none).
    public var targets: [Int32]
    /// [T] 1 where the target counts.
    public var mask: [Float]
    public var seam: Int?
    /// Positions whose target is in the window (T, or T - 1 for the row that ends at the window's last token): the
    /// losses the row gives.
    public var positions: Int

    public init(window: ArraySlice<UInt16>, offset: Int, context t: Int, roll: Int, masksSeam: Bool) {
        var inputs = [Int32](repeating: 0, count: t), targets = inputs, mask = [Float](repeating: 0, count: t)
        seam = window.withUnsafeBufferPointer { w in
            Self.cut(w, offset: offset, context: t, roll: roll, masksSeam: masksSeam, inputs: &inputs, targets: &targets, mask: &mask)
        }
        self.inputs = inputs; self.targets = targets; self.mask = mask
        positions = Self.positions(windowCount: window.count, offset: offset, context: t)
    }

    static func positions(windowCount: Int, offset: Int, context t: Int) -> Int { min(t, windowCount - 1 - offset) }

    /// `seam` for a window of roll `k` cut at `offset` into rows of `context`.
    static func seam(roll k: Int, offset: Int, context: Int) -> Int? {
        let i = k - 1 - offset
        return k > 0 && i >= 0 && i < context ? i : nil
    }

    /// The row written into `inputs`, `targets` and `mask` (T each, from their starts); returns the seam. The
    /// packer writes each row of a batch in place with it.
    static func cut(_ window: UnsafeBufferPointer<UInt16>, offset: Int, context t: Int, roll: Int, masksSeam: Bool,
                    inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>, mask: UnsafeMutablePointer<Float>) -> Int? {
        precondition(offset >= 0 && offset + t <= window.count, "row [\(offset), \(offset + t)) is outside a window of \(window.count) tokens")
        let src = window.baseAddress! + offset
        let full = positions(windowCount: window.count, offset: offset, context: t)
        for i in 0..<t { inputs[i] = Int32(truncatingIfNeeded: src[i]) }
        for i in 0..<full { targets[i] = Int32(truncatingIfNeeded: src[i + 1]) }
        for i in full..<t { targets[i] = 0 }
        mask.update(repeating: 1, count: full)
        (mask + full).update(repeating: 0, count: t - full)
        let seam = seam(roll: roll, offset: offset, context: t)
        if masksSeam, let seam { mask[seam] = 0 }
        return seam
    }

    private static func cut(_ window: UnsafeBufferPointer<UInt16>, offset: Int, context t: Int, roll: Int, masksSeam: Bool,
                            inputs: inout [Int32], targets: inout [Int32], mask: inout [Float]) -> Int? {
        inputs.withUnsafeMutableBufferPointer { i in targets.withUnsafeMutableBufferPointer { g in mask.withUnsafeMutableBufferPointer { m in
            cut(window, offset: offset, context: t, roll: roll, masksSeam: masksSeam, inputs: i.baseAddress!, targets: g.baseAddress!, mask: m.baseAddress!)
        } } }
    }
}

extension EvalWindowFile {
    /// Row `i` as the model sees it: its first `context` tokens (the file's by default; the trainer's held-out
    /// evaluation takes its own T) as inputs, with the row's roll.
    public func modelRow(_ i: Int, context: Int? = nil, masksSeam: Bool) -> ModelRow {
        ModelRow(window: row(i), offset: 0, context: context ?? self.context, roll: sources[i].roll, masksSeam: masksSeam)
    }

    /// Row `i`'s position whose target crosses its window's seam (`ModelRow.seam`); nil when no target of the row does.
    public func seam(_ i: Int) -> Int? { ModelRow.seam(roll: sources[i].roll, offset: 0, context: context) }
}
