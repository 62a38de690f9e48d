import Foundation
@testable import Shards
@testable import Support
import XCTest
@testable import Streaming

/// A decode that counts, per window, all calls and the most running at once.
final class DecodeCounter: @unchecked Sendable {
    private let catalog: WindowCatalog
    private let lock = NSLock()
    private var running: [Int: Int] = [:]
    private var calls: [Int: Int] = [:]
    private var atOnce = 0

    init(_ catalog: WindowCatalog) { self.catalog = catalog }

    func decode(_ id: Int) throws -> [UInt16] {
        lock.lock()
        running[id, default: 0] += 1
        calls[id, default: 0] += 1
        atOnce = max(atOnce, running[id]!)
        lock.unlock()
        defer { lock.lock(); running[id]! -= 1; lock.unlock() }
        // Slower than a real decode, so that workers building the same group find each other's windows in flight.
        usleep(1000)
        return try catalog.read(id)
    }

    var mostAtOnce: Int { lock.lock(); defer { lock.unlock() }; return atOnce }
    var decodes: [Int: Int] { lock.lock(); defer { lock.unlock() }; return calls }
}

final class WindowCacheTests: XCTestCase {
    /// `count` batches from `cursor`; the packer (and its threads) are gone when this returns.
    static func batches(_ catalog: WindowCatalog, _ cursor: PackerCursor, _ count: Int, workers: Int, cache: WindowCache) throws -> [Batch] {
        let packer = try BatchPacker(catalog: catalog, cursor: cursor, prefetch: 4, workers: workers, cache: cache)
        return try (0..<count).map { _ in try packer.next() }
    }

    /// Budgets of no window, 2 and 5 of the 12 and all 12; both orders; 1 to 4 workers: every batch is the one a
    /// single worker with an unbounded cache gives, the cache fills to its budget and no further, and no window
    /// is decoded by two workers at once.
    func testBatchesUnderMemoryPressureMatchOneWorkerWithAnUnboundedCache() throws {
        let catalog = try WindowCatalog(directory: try makeDataset(self, windows: 12), split: .train)
        let window = windowLength * MemoryLayout<UInt16>.size
        for order in BatchOrder.allCases {
            // 4 groups x 4 slots: an epoch and the first batches of the next.
            let cursor = PackerCursor(seed: 6, batchSize: 3, context: 16384, order: order)
            let count = 20
            let reference = try Self.batches(catalog, cursor, count, workers: 1, cache: WindowCache(bytes: .max) { try catalog.read($0) })
            XCTAssertEqual(reference.map(\.epoch), Array(repeating: 0, count: 16) + Array(repeating: 1, count: 4))
            var waits = 0
            for workers in 1...4 {
                for budget in [0, 2, 5, 12] {
                    let counter = DecodeCounter(catalog)
                    let cache = WindowCache(bytes: budget * window, decode: counter.decode)
                    let got = try Self.batches(catalog, cursor, count, workers: workers, cache: cache)
                    let label = "\(order), \(workers) workers, budget \(budget) windows"
                    XCTAssertEqual(got.map(\.rows), reference.map(\.rows), label)
                    XCTAssertEqual(got.map(\.inputs), reference.map(\.inputs), label)
                    XCTAssertEqual(got.map(\.targets), reference.map(\.targets), label)
                    XCTAssertEqual(got.map(\.mask), reference.map(\.mask), label)
                    XCTAssertEqual(got.map(\.epoch), reference.map(\.epoch), label)
                    XCTAssertEqual(got.map(\.continues), reference.map(\.continues), label)
                    XCTAssertEqual(cache.capacity, budget, label)
                    XCTAssertEqual(cache.highWater, budget, label)
                    XCTAssertEqual(counter.mostAtOnce, 1, label)
                    let decodes = counter.decodes
                    XCTAssertEqual(Set(decodes.keys), Set(0..<12), label)
                    // Room for the split: each window is decoded once, however many workers ask for it.
                    if budget == 12 { XCTAssertEqual(Set(decodes.values), [1], label) }
                    if workers > 1 { waits += cache.waits }
                }
            }
            // Consecutive batches of the sequential order share their group, so workers meet on its windows.
            if order == .sequential { XCTAssertGreaterThan(waits, 0, "no worker found a window in flight") }
        }
    }

    /// A worker waits for window 0 (another worker is decompressing it), then its own decode of window 1 throws: it
    /// must give up its wait, or the copy of window 0 handed off for it stays held until the run ends.
    func testWaiterWhoseDecodeThrowsHoldsNoHandedOffWindow() throws {
        let started = DispatchSemaphore(value: 0), go = DispatchSemaphore(value: 0)
        let cache = WindowCache(bytes: 0) { id in
            if id == 1 { throw FileError(URL(fileURLWithPath: "shard"), "window 1 is corrupt") }
            started.signal()
            go.wait()
            return [UInt16](repeating: 7, count: windowLength)
        }
        let done = DispatchSemaphore(value: 0)
        Thread {
            XCTAssertEqual(try? cache.windows([0], recent: [:])[0]?.first, 7)
            done.signal()
        }.start()
        started.wait()
        XCTAssertThrowsError(try cache.windows([0, 1], recent: [:]))
        XCTAssertEqual(cache.waits, 1, "the second worker should have found window 0 in flight")
        go.signal()
        done.wait()
        XCTAssertEqual(cache.handedOff, 0, "a window is held for a worker that left")
    }
}
