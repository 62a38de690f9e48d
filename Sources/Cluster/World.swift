import CLongCrawl
import Foundation

/// The ranks of a data-parallel job over MPI (Open MPI through the C shim). A process started without
/// `mpirun` is rank 0 of 1 and never calls MPI, so everything runs unchanged on a single machine. Its calls are
/// made from the thread that started MPI (FUNNELED); the type itself holds only constants.
public final class World: Sendable {
    /// This process's world, joined on first use.
    public static let shared = World()

    public let rank: Int
    public let size: Int
    public var isDistributed: Bool { size > 1 }

    private init() {
        var r: Int32 = 0, s: Int32 = 1
        let joined = lc_world_start(&r, &s)
        if joined < 0 {
            FileHandle.standardError.write(Data("error: MPI_Init failed\n".utf8))
            exit(1)
        }
        rank = Int(r); size = Int(s)
        // Ranks that share a machine split its cores: BLAS gets the cores this rank is bound to.
        if joined == 1 { lc_blas_set_threads(Swift.max(1, Swift.min(lc_world_cores(), Int32(ProcessInfo.processInfo.activeProcessorCount / Int(s))))) }
    }

    /// Sums `count` floats at `buffer` over all ranks, in place.
    public func sum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { lc_world_sum_float(buffer, count) }

    /// Starts summing `count` floats at `buffer` over all ranks in place and returns at once; nothing may read or
    /// write them until `waitForSums()`. For 2 ranks every element is a + b, so the result equals `sum(_:count:)`'s
    /// bit for bit however a buffer is split into started sums.
    public func startSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { lc_world_start_sum_float(buffer, count) }

    /// Lets the started sums progress: MPI moves their data only inside its calls.
    public func progressSums() { _ = lc_world_test_sums() }

    /// Waits for every started sum.
    public func waitForSums() { lc_world_wait_sums() }

    /// Sums each value over all ranks.
    public func sum(_ values: [Double]) -> [Double] {
        var v = values
        v.withUnsafeMutableBufferPointer { lc_world_sum_double($0.baseAddress!, $0.count) }
        return v
    }

    /// The largest of each value over all ranks.
    public func max(_ values: [Int64]) -> [Int64] {
        var v = values
        v.withUnsafeMutableBufferPointer { lc_world_max_int64($0.baseAddress!, Int32($0.count)) }
        return v
    }

    /// Every rank's bytes, in rank order, on every rank.
    public func allGather(_ data: Data) -> [Data] {
        var sizes = [Int](repeating: 0, count: size)
        let total = sizes.withUnsafeMutableBufferPointer { lc_world_gather_sizes(data.count, $0.baseAddress!) }
        var out = [UInt8](repeating: 0, count: Swift.max(total, 1))
        data.withUnsafeBytes { src in
            sizes.withUnsafeBufferPointer { s in out.withUnsafeMutableBytes { lc_world_gather_bytes(src.baseAddress, data.count, s.baseAddress!, $0.baseAddress!) } }
        }
        var parts: [Data] = [], offset = 0
        for n in sizes { parts.append(Data(out[offset..<(offset + n)])); offset += n }
        return parts
    }

    public func barrier() { lc_world_barrier() }

    /// Ends every rank with `code` (MPI_Abort), so no rank waits forever on one that failed.
    public func abort(_ code: Int32) -> Never {
        lc_world_abort(code)
        exit(code)
    }
}
