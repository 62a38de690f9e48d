import Foundation

/// A progress line for long work: redrawn in place on a terminal, a plain line every `logInterval`
/// seconds otherwise (so CI logs stay short), silent when disabled.
public final class ProgressReporter {
    let label: String
    let isTerminal: Bool
    let logInterval: Double
    private var started = Date()
    private var lastPrint = Date.distantPast
    private var totalBytes = 0
    private var drewLine = false

    /// - Parameters:
    ///   - label: what is counted, printed first on each line.
    ///   - terminal: whether stderr is a terminal (default: asks the OS).
    public init(label: String, terminal: Bool = isatty(2) != 0, logInterval: Double = 30) {
        self.label = label
        self.isTerminal = terminal
        self.logInterval = logInterval
    }

    public func begin(totalBytes: Int) {
        self.totalBytes = totalBytes
        started = Date()
        lastPrint = started
    }

    /// Reports bytes of input consumed, records seen, documents kept and tokens written so far.
    public func update(bytes: Int, documents: Int, kept: Int, tokens: Int) {
        guard due() else { return }
        let elapsed = max(Date().timeIntervalSince(started), 1e-9)
        let mbps = Double(bytes) / elapsed / 1e6
        let tps = Double(tokens) / elapsed
        var eta = "?"
        if bytes > 0, totalBytes > bytes { eta = Self.duration(elapsed * Double(totalBytes - bytes) / Double(bytes)) }
        let percent = totalBytes > 0 ? String(format: "%5.1f%%", 100 * Double(bytes) / Double(totalBytes)) : ""
        show("\(percent) \(documents) documents (\(kept) kept) " + String(format: "%.1f MB/s, %.2fM tokens/s", mbps, tps / 1e6) + ", ETA \(eta)")
    }

    /// Whether a line is due: at most 5 a second on a terminal, one per `logInterval` otherwise.
    public func due() -> Bool {
        let now = Date()
        guard now.timeIntervalSince(lastPrint) >= (isTerminal ? 0.2 : logInterval) else { return false }
        lastPrint = now
        return true
    }

    /// Prints `status` after the label, in place on a terminal, as a log line otherwise.
    public func show(_ status: String) {
        let line = "\(label) \(status)"
        if isTerminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            drewLine = true
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    /// Ends the in-place line so later output starts on a fresh line.
    public func end() {
        if drewLine { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        drewLine = false
    }

    /// `1h02m`, `3m05s`, `12s`.
    public static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
        if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return "\(s)s"
    }
}
