import Foundation
import Shards
import Support

/// Every window of one split of a dataset folder, addressable by a global window id
/// (0 ..< count, shards in index order). Works over either shard format, mixed.
/// Sendable by hand: the open readers and the rolls are touched only under `lock`; everything else is immutable.
public final class WindowCatalog: @unchecked Sendable {
    let directory: URL
    public let split: Split
    /// The split's shards in index order.
    public let shards: [ShardEntry]
    /// First window id of each shard.
    let firstWindow: [Int]
    public let count: Int
    private let lock = NSLock()
    /// A few open readers, most recent last: reading walks shards in permutation order, so keep it small.
    private var open: [(shard: Int, reader: ShardReader)] = []
    private let maxOpen = 8
    /// Each shard's rolls, kept once it has been opened: the packer asks for rows of windows it holds in its cache,
    /// whose shard readers may have been closed since.
    private var rolls: [Int: [Int]] = [:]

    /// Opens the split; a missing or incomplete index, or a shard file named in it that is missing, fails here.
    public init(directory: URL, split: Split) throws {
        let index = try DatasetIndex.load(from: directory)
        guard index.complete else {
            throw FileError(directory.appendingPathComponent(DatasetIndex.fileName), "dataset incomplete (preprocessing did not finish)")
        }
        self.directory = directory
        self.split = split
        shards = index.shards.filter { $0.split == split }
        for s in shards where !FileManager.default.fileExists(atPath: directory.appendingPathComponent(s.file).path) {
            throw FileError(directory.appendingPathComponent(s.file), "shard listed in index.json is missing")
        }
        var first: [Int] = [], total = 0
        for s in shards { first.append(total); total += s.windows }
        firstWindow = first
        count = total
        guard total > 0 else {
            let splits = Set(index.shards.map(\.split.rawValue)).sorted().joined(separator: ", ")
            throw FileError(directory, "split '\(split.rawValue)' has no windows (splits here: \(splits.isEmpty ? "none" : splits))")
        }
    }

    /// Shard number and window inside it for a global window id.
    func locate(_ id: Int) -> (shard: Int, window: Int) {
        precondition(id >= 0 && id < count, "window id \(id) out of 0..<\(count)")
        var lo = 0, hi = firstWindow.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if firstWindow[mid] <= id { lo = mid } else { hi = mid - 1 }
        }
        return (lo, id - firstWindow[lo])
    }

    /// Where the window came from: its document id and token offset.
    func source(_ id: Int) throws -> WindowSource {
        let (s, k) = locate(id)
        return try reader(s).sources[k]
    }

    /// Window `id`'s roll: the column holding its document's first token (0 for windows stored in order).
    public func roll(_ id: Int) throws -> Int {
        let (s, k) = locate(id)
        if let r = lock.withLock({ rolls[s] }) { return r[k] }
        return try reader(s).sources[k].roll
    }

    /// Decompresses window `id` into `buffer` (65,536 tokens), checking its checksum.
    public func read(_ id: Int, into buffer: UnsafeMutableBufferPointer<UInt16>) throws {
        let (s, k) = locate(id)
        try reader(s).readWindow(k, into: buffer)
    }

    /// Window `id` as an array.
    public func read(_ id: Int) throws -> [UInt16] {
        var out = [UInt16](repeating: 0, count: windowLength)
        try out.withUnsafeMutableBufferPointer { try read(id, into: $0) }
        return out
    }

    private func reader(_ shard: Int) throws -> ShardReader {
        lock.lock(); defer { lock.unlock() }
        if let i = open.firstIndex(where: { $0.shard == shard }) {
            let hit = open.remove(at: i)
            open.append(hit)
            return hit.reader
        }
        // Hashed once per catalog (its rolls are kept from then on); a shard closed and reopened is not hashed again.
        let r = try ShardReader(entry: shards[shard], in: directory, checkDigest: rolls[shard] == nil)
        if open.count == maxOpen { open.removeFirst() }
        open.append((shard, r))
        rolls[shard] = r.sources.map(\.roll)
        return r
    }
}

/// The order of a split's windows in one epoch: a Fisher-Yates shuffle of all window ids driven by
/// SplitMix64 seeded from `(seed, epoch)`, then rank `rank` of `world` takes every world-th entry.
/// Windows past the largest multiple of `world` are dropped for that epoch (a different set each epoch).
func epochOrder(count: Int, seed: UInt64, epoch: Int, rank: Int = 0, world: Int = 1) -> [Int] {
    let ids = epochShuffle(count: count, seed: seed, epoch: epoch)
    let per = count / world
    return (0..<per).map { ids[$0 * world + rank] }
}

/// The shuffle every rank's `epochOrder` deals from.
func epochShuffle(count: Int, seed: UInt64, epoch: Int) -> [Int] {
    var rng = SplitMix64(seed: seed ^ (UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15))
    return rng.permutation(count)
}

/// Runs `produce(i, worker)` for i = start, start+1, ... on `workers` background threads (worker w takes
/// i = start + w, start + w + workers, ...), at most `depth` items ahead of the consumer, who receives them in
/// order. An error is delivered at the position where it happened, never skipped.
final class Prefetcher<Item: Sendable> {
    /// What the producer threads and the consumer share; the threads hold this, not the prefetcher, so
    /// dropping the prefetcher stops them. Sendable by hand: every field is read and written under `condition`.
    private final class Shared: @unchecked Sendable {
        let condition = NSCondition()
        var ready: [Int: Result<Item, Error>] = [:]
        var next: Int
        var stopped = false
        /// Producer threads not yet returned.
        var running = 0
        let depth: Int
        init(start: Int, depth: Int) { next = start; self.depth = depth }
    }
    private let shared: Shared
    /// Seconds the consumer spent waiting for the producers.
    private(set) var stallSeconds = 0.0

    init(start: Int, depth: Int, workers: Int = 1, produce: @escaping @Sendable (Int, Int) throws -> Item) {
        let shared = Shared(start: start, depth: max(depth, workers))
        self.shared = shared
        shared.running = max(1, workers)
        for w in 0..<max(1, workers) {
            let thread = Thread {
                defer {
                    shared.condition.lock()
                    shared.running -= 1
                    shared.condition.broadcast()
                    shared.condition.unlock()
                }
                var i = start + w
                while true {
                    shared.condition.lock()
                    while i - shared.next >= shared.depth && !shared.stopped { shared.condition.wait() }
                    let stop = shared.stopped
                    shared.condition.unlock()
                    if stop { return }
                    let result = Result { try produce(i, w) }
                    shared.condition.lock()
                    shared.ready[i] = result
                    shared.condition.broadcast()
                    shared.condition.unlock()
                    if case .failure = result { return }
                    i += max(1, workers)
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// The next item in order (blocks until produced).
    func next() throws -> Item {
        shared.condition.lock()
        if shared.ready[shared.next] == nil {
            let t0 = DispatchTime.now().uptimeNanoseconds
            while shared.ready[shared.next] == nil { shared.condition.wait() }
            stallSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        let r = shared.ready.removeValue(forKey: shared.next)!
        shared.next += 1
        shared.condition.broadcast()
        shared.condition.unlock()
        return try r.get()
    }

    /// Stops the producers and waits for them: a producer left running would still read shards (and close their
    /// HDF5 handles) while the process exits.
    deinit {
        shared.condition.lock()
        shared.stopped = true
        shared.condition.broadcast()
        while shared.running > 0 { shared.condition.wait() }
        shared.condition.unlock()
    }
}
