import Foundation
import Support

/// Where a `WindowStream` is: enough to rebuild it and continue with exactly the windows it would yield next.
public struct StreamCursor: Codable, Equatable, Sendable {
    public var seed: UInt64
    public var rank: Int
    public var world: Int
    public var epoch: Int
    /// Windows of `epoch` already handed to the consumer.
    public var position: Int
}

/// One window as the stream yields it.
public struct StreamWindow: Sendable {
    /// Global window id in the split (see `WindowCatalog`).
    public var id: Int
    public var epoch: Int
    public var tokens: [UInt16]
}

/// The windows of one split, epoch after epoch, each epoch in the permutation fixed by `(seed, epoch)`
/// (see `epochOrder`), this rank's share only. Decompression runs ahead on a background thread through
/// a bounded queue, so memory stays at `prefetch` windows however many shards there are.
public final class WindowStream {
    public let catalog: WindowCatalog
    /// Where the next `next()` continues from.
    public private(set) var cursor: StreamCursor
    /// Windows this rank sees per epoch.
    public let windowsPerEpoch: Int
    /// Windows of the split left out of every epoch because they do not divide evenly over the ranks.
    public var droppedPerEpoch: Int { catalog.count - windowsPerEpoch * cursor.world }
    private let prefetcher: Prefetcher<StreamWindow>

    /// A stream at the start of epoch 0.
    public convenience init(catalog: WindowCatalog, seed: UInt64, rank: Int = 0, world: Int = 1, prefetch: Int = 4) throws {
        try self.init(catalog: catalog, cursor: StreamCursor(seed: seed, rank: rank, world: world, epoch: 0, position: 0), prefetch: prefetch)
    }

    /// A stream continuing from `cursor`.
    public init(catalog: WindowCatalog, cursor: StreamCursor, prefetch: Int = 4) throws {
        guard cursor.world >= 1, cursor.rank >= 0, cursor.rank < cursor.world else {
            throw StreamingError("rank \(cursor.rank) is not in 0..<\(cursor.world)")
        }
        let per = catalog.count / cursor.world
        guard per >= 1 else {
            throw StreamingError("split '\(catalog.split)' has \(catalog.count) windows, fewer than the \(cursor.world) ranks")
        }
        guard cursor.epoch >= 0, cursor.position >= 0, cursor.position <= per else {
            throw StreamingError("cursor epoch \(cursor.epoch) position \(cursor.position) is outside an epoch of \(per) windows")
        }
        self.catalog = catalog
        self.cursor = cursor
        windowsPerEpoch = per
        let c = cursor
        var order: (epoch: Int, ids: [Int]) = (-1, [])
        prefetcher = Prefetcher(start: c.epoch * per + c.position, depth: prefetch) { i, _ in
            let epoch = i / per
            if order.epoch != epoch { order = (epoch, epochOrder(count: catalog.count, seed: c.seed, epoch: epoch, rank: c.rank, world: c.world)) }
            let id = order.ids[i % per]
            return StreamWindow(id: id, epoch: epoch, tokens: try catalog.read(id))
        }
    }

    /// The next window; a corrupt or unreadable window throws an error naming the shard file and window.
    public func next() throws -> StreamWindow {
        let w = try prefetcher.next()
        cursor.position += 1
        if cursor.position == windowsPerEpoch { cursor.epoch += 1; cursor.position = 0 }
        return w
    }

    /// Seconds `next()` has waited on decompression so far.
    public var stallSeconds: Double { prefetcher.stallSeconds }
}

/// A one-line error about streaming or packing options.
public struct StreamingError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}
