import Foundation
import Streaming
import Support

/// One phase of `--context-schedule`: T for `steps` steps.
public struct ContextPhase: Codable, Equatable, Sendable {
    public var context: Int
    public var steps: Int

    init(context: Int, steps: Int) { self.context = context; self.steps = steps }

    /// `256:1000,1024:500`: T and steps per phase, in order.
    static func parse(_ text: String) throws -> [ContextPhase] {
        let phases = try text.split(separator: ",").map { item -> ContextPhase in
            let parts = item.split(separator: ":")
            guard parts.count == 2, let t = Int(parts[0]), let n = Int(parts[1]), n >= 1 else {
                throw LongCrawlError("--context-schedule: '\(item)' is not T:STEPS with STEPS positive")
            }
            try BatchPacker.validate(context: t)
            return ContextPhase(context: t, steps: n)
        }
        guard !phases.isEmpty else { throw LongCrawlError("--context-schedule: no phase in '\(text)'") }
        return phases
    }

    /// The phase of step `step` (0-based; the last phase for a step past the end) and its index.
    static func at(_ step: Int, in phases: [ContextPhase]) -> (index: Int, phase: ContextPhase) {
        var end = 0
        for (i, p) in phases.enumerated() {
            end += p.steps
            if step < end { return (i, p) }
        }
        return (phases.count - 1, phases[phases.count - 1])
    }

    /// The cursor that goes on with T = `context` and `rows` rows per batch where `cursor` has handed out whole
    /// windows: at the same place in the epoch's window order (a new epoch when fewer than `rows` windows are left in
    /// this one, as the packer leaves them out); nil when the cursor is in the middle of a window, or its windows so
    /// far are not a whole number of the new batches' groups. `windows`: the split's count.
    static func translate(_ cursor: PackerCursor, windows: Int, context: Int, rows: Int) -> PackerCursor? {
        var out = cursor
        out.context = context; out.batchSize = rows
        guard cursor.groups(windows: windows) >= 1, out.groups(windows: windows) >= 1 else { return nil }
        let at = cursor.position(windows: windows)
        // Windows of this epoch used up: sequential gives group after group a window at a time; longcrawl finishes
        // its windows only at the epoch's end.
        let used: Int
        switch cursor.order {
        case .sequential:
            guard at.slot == 0 else { return nil }
            used = at.group * cursor.batchSize
        case .longcrawl:
            guard at.group == 0 && at.slot == 0 else { return nil }
            used = 0
        }
        guard used % rows == 0 else { return nil }
        var next = PackerCursor.Position(epoch: at.epoch, group: used / rows, slot: 0)
        if next.group >= out.groups(windows: windows) { next = PackerCursor.Position(epoch: at.epoch + 1, group: 0, slot: 0) }
        out.nextBatch = out.batch(at: next, windows: windows)
        return out
    }
}
