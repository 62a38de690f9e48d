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

    /// The most bytes one collective moves from one rank to another in one MPI call: larger payloads go in rounds,
    /// so no count passes MPI's `int` and a round's buffers hold at most `ranks x messageBytes`. 16 MiB, or
    /// `LONGCRAWL_MESSAGE_BYTES` (tests set a few bytes to make every payload take many rounds).
    public static let messageBytes: Int = ProcessInfo.processInfo.environment["LONGCRAWL_MESSAGE_BYTES"].flatMap(Int.init)
        .map { Swift.max(1, $0) } ?? 16 << 20

    /// Every rank's bytes, in rank order, on every rank.
    public func allGather(_ data: Data) -> [Data] {
        let (bytes, counts) = allToAll([[UInt8]](repeating: [UInt8](data), count: size))
        return counts.indices.map { i in Data(bytes[counts[..<i].reduce(0, +)..<counts[...i].reduce(0, +)]) }
    }

    /// `outgoing[j]` to rank j, from every rank at once (MPI_Alltoallv, in rounds of at most `messageBytes` per pair
    /// of ranks): what the ranks sent this one, concatenated in rank order, and how many values came from each.
    /// Every rank must call it. Values go as their bytes are: the ranks share one architecture.
    public func allToAll<T: BitwiseCopyable>(_ outgoing: [[T]]) -> (values: [T], counts: [Int]) {
        precondition(outgoing.count == size, "allToAll needs one array per rank")
        let stride = MemoryLayout<T>.stride
        let sendBytes = outgoing.map { $0.count * stride }
        var recvBytes = [Int](repeating: 0, count: size)
        lc_world_exchange_sizes(sendBytes, &recvBytes)
        let chunk = Swift.max(1, Swift.min(Self.messageBytes, Int(Int32.max) / size))
        let rounds = Int(max([Int64((Swift.max(sendBytes.max()!, recvBytes.max()!) + chunk - 1) / chunk)])[0])
        let total = recvBytes.reduce(0, +), starts = recvBytes.indices.map { recvBytes[..<$0].reduce(0, +) }
        // Every byte of the result is written by some round before it is returned.
        var values = [T](unsafeUninitializedCapacity: total / stride) { _, count in count = total / stride }
        for r in 0..<rounds {
            func round(_ bytes: [Int]) -> (counts: [Int32], offsets: [Int32]) {
                let counts = bytes.map { Int32(Swift.min(Swift.max($0 - r * chunk, 0), chunk)) }
                return (counts, counts.indices.map { Int32(counts[..<$0].reduce(0, +)) })
            }
            let (sc, so) = round(sendBytes), (rc, ro) = round(recvBytes)
            var send: [UInt8] = []
            send.reserveCapacity(Int(sc.reduce(0, +)) + 1)
            for (j, v) in outgoing.enumerated() where sc[j] > 0 { v.withUnsafeBytes { send += $0[(r * chunk)..<(r * chunk + Int(sc[j]))] } }
            if send.isEmpty { send = [0] }  // a valid address for a round this rank sends nothing in
            var recv = [UInt8](repeating: 0, count: Swift.max(Int(rc.reduce(0, +)), 1))
            send.withUnsafeBytes { s in lc_world_exchange_round(s.baseAddress, sc, so, &recv, rc, ro) }
            values.withUnsafeMutableBytes { dst in
                recv.withUnsafeBytes { src in
                    for i in 0..<size where rc[i] > 0 {
                        (dst.baseAddress! + starts[i] + r * chunk).copyMemory(from: src.baseAddress! + Int(ro[i]), byteCount: Int(rc[i]))
                    }
                }
            }
        }
        return (values, recvBytes.map { $0 / stride })
    }

    public func barrier() { lc_world_barrier() }

    /// Ends every rank with `code` (MPI_Abort), so no rank waits forever on one that failed.
    public func abort(_ code: Int32) -> Never {
        lc_world_abort(code)
        exit(code)
    }
}
