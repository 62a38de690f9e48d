import Foundation
import Support

/// The decompressed windows a `BatchPacker`'s workers share. It keeps the first `capacity` windows asked for, for
/// the whole run, and never evicts: the LongCrawl64 order visits every window once per slot, a cyclic pattern
/// where LRU would keep nothing, while a fixed set hits once per slot. A window one worker is decompressing is
/// marked in flight; another worker that needs it waits for that copy instead of decompressing it again.
/// Sendable by hand: its state is touched only under `condition`; `decode` runs outside it on any worker.
final class WindowCache: @unchecked Sendable {
    /// Windows kept at most: the byte budget over 65,536 two-byte tokens.
    let capacity: Int
    private let decode: (Int) throws -> [UInt16]
    private let condition = NSCondition()
    private var kept: [Int: [UInt16]] = [:]
    /// Slots of `kept` promised to decodes in flight, so the budget holds however many run at once.
    private var reserved = 0
    /// Windows being decompressed now, with the number of workers waiting for each.
    private var loading: [Int: Int] = [:]
    /// Windows decompressed while the cache was full, held until the workers that waited for them take them.
    /// They share storage with the decoding worker's own copy (arrays are copy-on-write), so they cost nothing.
    private var handoff: [Int: (window: [UInt16], waiters: Int)] = [:]
    /// Windows held in `handoff` now (for tests).
    var handedOff: Int { condition.withLock { handoff.count } }
    /// Most windows `kept` has held (for tests).
    private(set) var highWater = 0
    /// Times a worker found the window it needed in flight (for tests).
    private(set) var waits = 0

    /// A cache of at most `bytes` of windows; `decode` reads one window (`WindowCatalog.read`; tests count calls).
    init(bytes: Int, decode: @escaping (Int) throws -> [UInt16]) {
        capacity = max(0, bytes / (windowLength * MemoryLayout<UInt16>.size))
        self.decode = decode
    }

    private enum Claim { case ready([UInt16]), inFlight, decode(keep: Bool) }

    /// Under `condition`: the window if it is here, else whether another worker is decompressing it (the caller is
    /// then counted as waiting), else a mark that the caller decompresses it now.
    private func claim(_ id: Int) -> Claim {
        if let w = kept[id] ?? handoff[id]?.window { return .ready(w) }
        if let n = loading[id] { loading[id] = n + 1; waits += 1; return .inFlight }
        loading[id] = 0
        let keep = kept.count + reserved < capacity
        if keep { reserved += 1 }
        return .decode(keep: keep)
    }

    /// Decompresses window `id` as claimed, then keeps it or hands it to the workers that waited for it.
    private func load(_ id: Int, keep: Bool) throws -> [UInt16] {
        let result = Result { try decode(id) }
        condition.lock()
        let waiters = loading.removeValue(forKey: id)!
        if keep { reserved -= 1 }
        if case .success(let w) = result {
            if keep {
                kept[id] = w
                highWater = max(highWater, kept.count)
            } else if waiters > 0 {
                handoff[id] = (w, waiters)
            }
        }
        condition.broadcast()
        condition.unlock()
        return try result.get()
    }

    /// Windows `ids`, taking those in `recent` (the worker's previous batch) as they are. First every window that is
    /// here or that no other worker is decompressing, then those that were in flight, so two workers building the
    /// same group split its windows between them.
    func windows(_ ids: [Int], recent: [Int: [UInt16]]) throws -> [Int: [UInt16]] {
        var out: [Int: [UInt16]] = [:], inFlight: [Int] = []
        func take(_ id: Int, _ c: Claim) throws {
            switch c {
            case .ready(let w): out[id] = w
            case .inFlight: inFlight.append(id)
            case .decode(let keep): out[id] = try load(id, keep: keep)
            }
        }
        var i = 0
        do {
            for id in ids {
                if let w = recent[id] { out[id] = w; continue }
                condition.lock()
                let c = claim(id)
                condition.unlock()
                try take(id, c)
            }
            while i < inFlight.count {
                let id = inFlight[i]
                i += 1
                condition.lock()
                while loading[id] != nil { condition.wait() }
                var w = kept[id]
                if w == nil, let h = handoff[id] {
                    w = h.window
                    handoff[id] = h.waiters > 1 ? (h.window, h.waiters - 1) : nil
                }
                // The decode failed (that worker reports the error): claim the window again, which may mean decoding it.
                let c = w.map(Claim.ready) ?? claim(id)
                condition.unlock()
                try take(id, c)
            }
        } catch {
            condition.withLock { for id in inFlight[i...] { stopWaiting(id) } }
            throw error
        }
        return out
    }

    /// Under `condition`: a worker that counted itself as waiting for `id` and will not take it (its own decode of
    /// another window threw) gives up its share, so a handed-off copy is not held for it until the run ends.
    private func stopWaiting(_ id: Int) {
        if let n = loading[id] {
            loading[id] = n - 1
        } else if let h = handoff[id] {
            handoff[id] = h.waiters > 1 ? (h.window, h.waiters - 1) : nil
        }
    }
}
