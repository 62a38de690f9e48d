/// SplitMix64: a tiny, well-mixed generator whose whole state is one word (so it is trivially resumable). The
/// one generator of the project: model initialization, epoch orders, evaluation samples, text generation.
public struct SplitMix64: RandomNumberGenerator, Codable, Equatable, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// Uniform in 0 ..< bound without modulo bias (Lemire's method).
    public mutating func next(below bound: UInt64) -> UInt64 {
        var m = next().multipliedFullWidth(by: bound)
        if m.low < bound {
            let threshold = (0 &- bound) % bound
            while m.low < threshold { m = next().multipliedFullWidth(by: bound) }
        }
        return m.high
    }

    /// 0 ..< count in a Fisher-Yates order driven by this generator: the one shuffle of the project (epoch orders,
    /// an export's rows).
    public mutating func permutation(_ count: Int) -> [Int] {
        var ids = Array(0..<count)
        for i in stride(from: count - 1, to: 0, by: -1) { ids.swapAt(i, Int(next(below: UInt64(i + 1)))) }
        return ids
    }

    /// SplitMix64's finalizer: every input bit reaches every output bit.
    @inlinable
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// 64-bit FNV-1a of `bytes`: fast and stable across platforms and runs (unlike `Hasher`), weak in its low bits
/// alone, so callers finish it with a mix.
@inlinable @inline(__always)
public func fnv1a<Bytes: Sequence>(_ bytes: Bytes) -> UInt64 where Bytes.Element == UInt8 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    return h
}

/// LongCrawl64's roll of one window, in 0 ..< 65,536: the column where the document's first token lands when
/// the window is stored as `numpy.roll(window, k)`. Drawn from `seed`, the document id and the window's index in
/// its document alone, so it does not depend on the corpus around the document or the order of the inputs:
/// `mix(mix(seed ^ fnv1a(document's UTF-8)) &+ window) >> 48`, `mix` the SplitMix64 finalizer (docs/FORMATS.md).
public func rollShift(seed: UInt64, document: String, window: Int) -> Int {
    Int(SplitMix64.mix(SplitMix64.mix(seed ^ fnv1a(document.utf8)) &+ UInt64(window)) >> 48)
}
