import Cluster
import Tensor

/// PyTorch DDP's buckets over the gradient block: the ranges `Transformer.backward` finishes (adjacent, descending)
/// are merged until a bucket holds `minimum` elements, and its in-place sum over ranks then starts while backward
/// goes on. Each range handed in also lets the started sums progress, since MPI moves their data only inside its
/// calls (FUNNELED: no progress thread).
final class GradientBuckets {
    /// 2^16 floats (256 KiB), one layer a bucket for any model but the smallest. DDP's 25 MB amortizes a GPU
    /// collective's launch over a network. Here (2 ranks, shared memory, libnbc's ring) a sum runs at 1.3 GB/s at
    /// 256 KiB, 2.3 at 4 MiB and 3.8 at 16 MiB, so below 256 KiB merging pays (ln_f joins the last layer; `tiny`'s
    /// 50k-float layers go together); but a layer of `small` is 3.2 MB, and since a sum moves only at the later
    /// ranges' progress calls, a bucket of several layers would start layers later: one layer a bucket, 3 of the 4
    /// layers of `small` are summed before backward ends (measured at these sizes, one progress call a layer).
    static let minimum = 1 << 16
    let world: World
    let block: Tensor<Float>
    private var bucket: Range<Int>?

    init(world: World, block: Tensor<Float>) { self.world = world; self.block = block }

    /// `range`'s gradients are final: into the open bucket, whose sum starts once it is large enough.
    func ready(_ range: Range<Int>) {
        if let open = bucket {
            precondition(range.upperBound == open.lowerBound, "gradient range \(range) does not end where bucket \(open) begins")
            bucket = range.lowerBound..<open.upperBound
        } else {
            bucket = range
        }
        if bucket!.count >= Self.minimum { start() }
        world.progressSums()
    }

    /// Starts the last bucket and waits for every sum: the whole block is then summed over ranks.
    func finish() {
        start()
        world.waitForSums()
    }

    private func start() {
        guard let open = bucket else { return }
        world.startSum(block.data + open.lowerBound, count: open.count)
        bucket = nil
    }
}
