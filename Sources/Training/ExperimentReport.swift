import Foundation
import Support

/// One variant's results, a row of the experiment's report.
struct ExperimentRow {
    var variant: Variant
    var eval: EvalResult
    var state: TrainState
    var probe: ProbeResult
}

extension Experiment {
    /// The comparison table: one row per variant, every figure with its standard error across the windows.
    static func report(_ plan: Plan, _ rows: [ExperimentRow]) -> String {
        let l = plan.config.train.context
        let names = rows.first?.eval.summary.ranges.map(\.name) ?? []
        func cell(_ e: Estimate?) -> String {
            guard let e else { return "-" }
            return e.se.map { String(format: "%.3f ± %.3f", e.mean, $0) } ?? String(format: "%.3f (SE n/a)", e.mean)
        }
        var md = """
        # Experiment: \(plan.config.model.name) trained at context L = \(l)

        Same config, data order (seed \(plan.seed)), initialization and budget for every variant: \(plan.steps) steps of \
        \(plan.config.train.batch) x \(l) tokens. Evaluation: \(rows.first?.eval.windows ?? 0) windows of `\(plan.evalWindows)`, the same \
        for every variant; loss in nats per token, mean ± standard error across windows (the windows are the independent \
        samples). Ranges are of context lengths (position + 1). The extrapolation gap is the mean over (L, 4L] minus the \
        mean over (L/2, L], a paired difference per window. Softmax is evaluated in independent segments of its training \
        context (its attention form has no state to carry); the sympow variants in one pass with their state carried.\(plan.order == .sequential ? """
         Training order sequential (each row reads its window segment after segment); a +carry variant starts each \
        segment from the state its row's previous one ended with (truncated backpropagation: the gradient stops at the \
        segment's start), the others from an empty state.
        """ : "")

        | variant | best-context [0.9L, L) | \(names.joined(separator: " | ")) | gap (L,4L] - (L/2,L] | tokens seen | train wall time | eval form |
        | --- | ---: |\(String(repeating: " ---: |", count: names.count)) ---: | ---: | ---: | --- |

        """
        for row in rows {
            let r = row.eval
            let ranges = names.map { n in cell(r.summary.ranges.first { $0.name == n }?.loss) }
            md += "| \(row.variant.name) | \(cell(r.summary.bestContext)) | \(ranges.joined(separator: " | ")) | \(cell(r.summary.extrapolationGap)) | " +
                  "\(row.state.tokens) | \(ProgressReporter.duration(row.state.elapsed)) | \(r.form) |\n"
        }
        md += "\n![loss by position](loss-by-position.png)\n"
        guard rows.contains(where: { !$0.probe.distances.isEmpty }) else { return md }
        md += """

        ## Recall probe

        Copy gain: the loss on the second copy of a \(Probe.defaultSpan)-token span, Δ tokens of other text after the \
        first, in a control whose first span is another window's, minus the loss on it after the real first span (after \
        each copy's first token), paired per window, mean ± standard error over the same windows. A model that \
        retrieves over Δ shows a gain at Δ; one that remembers nothing across Δ shows 0. `longcrawl probe` computes the \
        same alone.

        | variant | Δ | control | second copy | gain |
        | --- | ---: | ---: | ---: | ---: |

        """
        for row in rows {
            for d in row.probe.distances {
                md += "| \(row.variant.name) | \(d.delta) | \(cell(d.control)) | \(cell(d.secondCopy)) | \(cell(d.gain)) |\n"
            }
        }
        md += "\n![copy gain by distance](probe.png)\n"
        return md
    }
}
