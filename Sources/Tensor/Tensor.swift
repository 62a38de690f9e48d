import CLongCrawl
import Dispatch
import Glibc

/// The float types the model runs in: Float for training, Double for finite-difference tests.
public protocol TensorScalar: BinaryFloatingPoint, SIMDScalar, Sendable, Codable {
    /// C = alpha * op(A) * op(B) + beta * C, row-major, on BLAS (sgemm / dgemm).
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                     alpha: Self, a: UnsafePointer<Self>, lda: Int,
                     b: UnsafePointer<Self>, ldb: Int,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// sum_i a[i] b[i] (BLAS sdot / ddot).
    static func dot(_ a: UnsafePointer<Self>, _ b: UnsafePointer<Self>, _ n: Int) -> Self
    static func exp(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    /// The largest of x[0..<n].
    static func maximum(_ x: UnsafePointer<Self>, _ n: Int) -> Self
    /// x[i] = exp(x[i] - shift) in place, returning the sum in Float64 (a softmax row).
    static func expShiftedSum(_ x: UnsafeMutablePointer<Self>, _ n: Int, shift: Self) -> Double
    /// a[i] = GELU(h[i]) for i < n, the tanh form.
    static func gelu(_ h: UnsafePointer<Self>, _ a: UnsafeMutablePointer<Self>, _ n: Int)
    /// a[i] = GELU(h[i]) and da[i] *= GELU'(h[i]) for i < n, from one tanh per element.
    static func geluBackward(_ h: UnsafePointer<Self>, _ a: UnsafeMutablePointer<Self>, _ da: UnsafeMutablePointer<Self>, _ n: Int)
}

extension Float: TensorScalar {
    @inlinable public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                       alpha: Float, a: UnsafePointer<Float>, lda: Int,
                                       b: UnsafePointer<Float>, ldb: Int,
                                       beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inlinable public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float { cblas_sdot(Int32(n), a, 1, b, 1) }
    @inlinable public static func exp(_ x: Float) -> Float { expf(x) }
    @inlinable public static func log(_ x: Float) -> Float { logf(x) }
    @inlinable public static func maximum(_ x: UnsafePointer<Float>, _ n: Int) -> Float { lc_max(x, n) }
    @inlinable public static func expShiftedSum(_ x: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Double {
        lc_exp_shifted_sum(x, n, shift)
    }
    @inlinable public static func gelu(_ h: UnsafePointer<Float>, _ a: UnsafeMutablePointer<Float>, _ n: Int) { lc_gelu_forward(h, a, n) }
    @inlinable public static func geluBackward(_ h: UnsafePointer<Float>, _ a: UnsafeMutablePointer<Float>, _ da: UnsafeMutablePointer<Float>, _ n: Int) {
        lc_gelu_backward(h, a, da, n)
    }
}

extension Double: TensorScalar {
    @inlinable public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                       alpha: Double, a: UnsafePointer<Double>, lda: Int,
                                       b: UnsafePointer<Double>, ldb: Int,
                                       beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inlinable public static func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ n: Int) -> Double { cblas_ddot(Int32(n), a, 1, b, 1) }
    @inlinable public static func exp(_ x: Double) -> Double { Glibc.exp(x) }
    @inlinable public static func log(_ x: Double) -> Double { Glibc.log(x) }
    public static func maximum(_ x: UnsafePointer<Double>, _ n: Int) -> Double {
        var m = -Double.infinity
        for i in 0..<n { m = Swift.max(m, x[i]) }
        return m
    }
    public static func expShiftedSum(_ x: UnsafeMutablePointer<Double>, _ n: Int, shift: Double) -> Double {
        var sum = 0.0
        for i in 0..<n { x[i] = Glibc.exp(x[i] - shift); sum += x[i] }
        return sum
    }
    // The reference for the Float kernels (and the gradient checks' precision): the formula with libm's tanh.
    public static func gelu(_ h: UnsafePointer<Double>, _ a: UnsafeMutablePointer<Double>, _ n: Int) {
        for i in 0..<n { a[i] = 0.5 * h[i] * (1 + Glibc.tanh(geluArgument(h[i]))) }
    }
    public static func geluBackward(_ h: UnsafePointer<Double>, _ a: UnsafeMutablePointer<Double>, _ da: UnsafeMutablePointer<Double>, _ n: Int) {
        for i in 0..<n {
            let x = h[i], th = Glibc.tanh(geluArgument(x))
            a[i] = 0.5 * x * (1 + th)
            da[i] *= 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * geluC * (1 + 3 * 0.044715 * x * x)
        }
    }
    private static let geluC = 0.7978845608028654 // sqrt(2 / pi)
    private static func geluArgument(_ x: Double) -> Double { geluC * (x + 0.044715 * x * x * x) }
}

/// A dense, contiguous, row-major tensor: it owns its storage, or views part of another tensor's.
///
/// A class, not a struct: layers hand the same activation buffers to forward and backward,
/// and copy-on-write checks have no place in hot loops. Sendable by hand: threads that share a tensor write disjoint
/// ranges of it (heads, rows, slices) and it is read after they are joined.
public final class Tensor<Scalar: TensorScalar>: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Scalar>
    /// The tensor whose storage a view shares, kept alive by the view; nil when this one owns its storage.
    private let base: Tensor?

    /// A zero-filled tensor.
    public convenience init(_ shape: [Int]) {
        self.init(uninitialized: shape)
        data.initialize(repeating: 0, count: Swift.max(count, 1))
    }

    /// A tensor whose elements are not set: for outputs written in full before they are read (a GEMM with beta 0,
    /// a normalization), where zero-filling would be one more pass over memory on one core.
    public init(uninitialized shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = .allocate(capacity: Swift.max(count, 1))
        base = nil
    }

    public convenience init(_ shape: [Int], _ values: [Scalar]) {
        self.init(uninitialized: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.initialize(from: $0.baseAddress!, count: count) }
    }

    /// A view of `shape` into `base` from element `offset` on: writes to either show in both.
    public init(viewing base: Tensor, offset: Int, shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        precondition(offset >= 0 && offset + count <= base.count, "view [\(offset), \(offset + count)) outside \(base.count) elements")
        self.data = base.data + offset
        self.base = base.base ?? base
    }

    deinit { if base == nil { data.deallocate() } }

    public var buffer: UnsafeMutableBufferPointer<Scalar> { .init(start: data, count: count) }
    public var array: [Scalar] { Array(buffer) }

    public subscript(i: Int) -> Scalar {
        get { data[i] }
        set { data[i] = newValue }
    }

    public func zero() { data.update(repeating: 0, count: count) }

    /// self += y elementwise.
    public func add(_ y: Tensor) {
        precondition(y.count == count, "adding \(y.count) elements to \(count)")
        parallelSlices(count) { slice in
            let x = self.data, y = y.data
            for i in slice { x[i] += y[i] }
        }
    }

    /// self *= factor elementwise.
    public func scale(by factor: Scalar) { for i in 0..<count { data[i] *= factor } }

    public func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.data.initialize(from: data, count: count)
        return t
    }
}

/// Memory `gemm` reads: a tensor, an array or a pointer.
public protocol ScalarSource {
    associatedtype Scalar: TensorScalar
    func withScalars<R>(_ body: (UnsafePointer<Scalar>) -> R) -> R
}

/// Memory `gemm` writes through: a tensor or a pointer (an array is passed `inout` instead).
public protocol ScalarSink: ScalarSource {
    func withMutableScalars<R>(_ body: (UnsafeMutablePointer<Scalar>) -> R) -> R
}

extension Tensor: ScalarSink {
    @inlinable public func withScalars<R>(_ body: (UnsafePointer<Scalar>) -> R) -> R { body(data) }
    @inlinable public func withMutableScalars<R>(_ body: (UnsafeMutablePointer<Scalar>) -> R) -> R { body(data) }
}

extension Array: ScalarSource where Element: TensorScalar {
    @inlinable public func withScalars<R>(_ body: (UnsafePointer<Element>) -> R) -> R { withUnsafeBufferPointer { body($0.baseAddress!) } }
}

extension UnsafeMutablePointer: ScalarSource where Pointee: TensorScalar {
    @inlinable public func withScalars<R>(_ body: (UnsafePointer<Pointee>) -> R) -> R { body(self) }
}

extension UnsafeMutablePointer: ScalarSink where Pointee: TensorScalar {
    @inlinable public func withMutableScalars<R>(_ body: (UnsafeMutablePointer<Pointee>) -> R) -> R { body(self) }
}

/// C = alpha op(A) op(B) + beta C on BLAS for dense row-major operands, op(A) [m, k], op(B) [k, n], C [m, n] (leading
/// dimensions from these shapes). Each operand is a tensor, an array or a pointer, used from element `offsets` on.
@inlinable
public func gemm<A: ScalarSource, B: ScalarSource, C: ScalarSink>(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: C.Scalar, _ a: A, _ b: B, _ beta: C.Scalar, _ c: C,
    offsets: (a: Int, b: Int, c: Int) = (0, 0, 0)
) where A.Scalar == C.Scalar, B.Scalar == C.Scalar {
    a.withScalars { a in b.withScalars { b in c.withMutableScalars { c in
        C.Scalar.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a + offsets.a, lda: transA ? m : k,
                      b: b + offsets.b, ldb: transB ? k : n, beta: beta, c: c + offsets.c, ldc: n)
    } } }
}

/// `gemm` into an array.
@inlinable
public func gemm<A: ScalarSource, B: ScalarSource>(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: A.Scalar, _ a: A, _ b: B, _ beta: A.Scalar, _ c: inout [A.Scalar],
    offsets: (a: Int, b: Int, c: Int) = (0, 0, 0)
) where B.Scalar == A.Scalar {
    c.withUnsafeMutableBufferPointer { gemm(transA, transB, m, n, k, alpha, a, b, beta, $0.baseAddress!, offsets: offsets) }
}

/// OpenBLAS's thread count: the cores this process (this MPI rank) may use, as the OpenBLAS core re-exec set it.
public var blasThreads: Int { max(1, Int(lc_blas_get_threads())) }

/// Runs `body` over contiguous slices of 0..<count, one per BLAS thread, in parallel: for elementwise passes between
/// GEMMs, which would otherwise leave every core but one idle. `cost` is the elements of work per item (a row's
/// width); small passes run in one slice (a hand-over costs microseconds). Each item must be computed alike
/// whichever slice holds it.
public func parallelSlices(_ count: Int, cost: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
    let lanes = count * cost < 1 << 16 ? 1 : blasThreads
    guard lanes > 1 else { if count > 0 { body(0..<count) }; return }
    // Slices of whole 16-element (64-byte) runs: neighbouring threads share at most one cache line.
    let step = (count / lanes + 15) / 16 * 16
    DispatchQueue.concurrentPerform(iterations: lanes) { i in
        let start = min(count, i * step), end = i == lanes - 1 ? count : min(count, start + step)
        if start < end { body(start..<end) }
    }
}

/// Runs `body` with OpenBLAS on one thread, then restores its thread count. For code that already runs one task
/// per core (attention heads): small products on BLAS's own threads spend most of their time handing work over.
public func withSingleThreadedBLAS<T>(_ body: () throws -> T) rethrows -> T {
    let saved = lc_blas_get_threads()
    lc_blas_set_threads(1)
    defer { lc_blas_set_threads(saved) }
    return try body()
}

/// Seconds on the monotonic clock, for timing.
public func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
