import Foundation
@testable import Support
import XCTest
@testable import Model
@testable import Tensor

/// p = 4, as the paper's Figure 2: the form chosen by cost, chunked = attention, large scores.
final class PowerFourTests: XCTestCase {
    /// The rule T > D + c, with the thresholds worked out by hand: tiny (d 32, p 2, c 64): D = 528, 592;
    /// small (d 64, p 2, c 128): D = 2,080, 2,208; tiny-p4 (d 16, p 4, c 256): D = 3,876, 4,132;
    /// d 64, p 4, c 128: D = 766,480, 766,608.
    func testFormChosenByCost() throws {
        let cases: [(AttentionKind, Int, Int, Int, Int, AttentionForm)] = [
            (.conformalSympow, 32, 2, 64, 64, .quadratic), (.conformalSympow, 32, 2, 64, 592, .quadratic),
            (.conformalSympow, 32, 2, 64, 640, .chunked), (.softmax, 32, 2, 64, 65_536, .quadratic),
            (.sympow, 64, 2, 128, 2048, .quadratic), (.sympow, 64, 2, 128, 4096, .chunked),
            (.conformalSympow, 16, 4, 256, 1024, .quadratic), (.sympowGating, 16, 4, 256, 8192, .chunked),
            (.conformalSympow, 16, 4, 256, 4096, .quadratic), (.conformalSympow, 64, 4, 128, 65_536, .quadratic),
        ]
        for (kind, d, p, c, t, want) in cases {
            XCTAssertEqual(AttentionForm.choose(kind: kind, headDimension: d, power: p, chunk: c, length: t), want, "\(kind) d \(d) p \(p) c \(c) T \(t)")
        }
        for (d, p) in [(8, 2), (16, 4), (32, 2), (64, 2), (6, 6)] {
            XCTAssertEqual(SymmetricPower.size(dimension: d, power: p), SymmetricPower(dimension: d, power: p).size)
        }
        XCTAssertEqual(SymmetricPower.size(dimension: 64, power: 4), 766_480)
        // The layer and the flop count use the same rule.
        let config = try shippedModelConfig("tiny-p4")
        XCTAssertEqual(config.headDim, 16)
        let layer = SympowAttention<Float>(dModel: 64, heads: 4, power: 4, chunk: 256, kind: .conformalSympow)
        XCTAssertEqual(layer.resolvedForm(4096), .quadratic)
        XCTAssertEqual(layer.resolvedForm(8192), .chunked)
        let at1024 = config.forwardFlopsPerToken(context: 1024)
        XCTAssertEqual(config.forwardFlopsPerToken(context: 2048) - at1024, 2 * 4 * 2 * 1024 * 16, "attention form: 2Td per head")
        XCTAssertTrue(config.flopFormula(context: 2048).contains("2Td"))
        XCTAssertTrue(config.flopFormula(context: 16_384).contains("4D(d+1)"))
    }

    /// Chunked = attention for p = 4 at T = 4 chunks, forward and backward, Float64 and Float32, strongly varying gates.
    func testChunkedEqualsAttentionForPowerFour() {
        func check<S: TensorScalar>(_: S.Type, tolerance: Double) {
            let x: HeadInput<S> = randomHead(t: 64, d: 16, seed: 51)
            var gen = Gaussian(seed: 52)
            let dy: [S] = gen.array(64 * 16)
            let (y, cache) = QuadraticAttention.forward(x, score: .power(4))
            let want = QuadraticAttention.backward(x, score: .power(4), y: y, cache: cache, dy: dy)
            let chunked = ChunkedAttention(headDimension: 16, power: 4, chunk: 16)
            let (yc, cc, _) = chunked.forward(x)
            let got = chunked.backward(x, y: yc, cache: cc, dy: dy)
            XCTAssertLessThan(maxRelativeError(yc, y), tolerance, "\(S.self) y")
            XCTAssertLessThan(maxRelativeError(got.dqr, want.dqr), tolerance, "\(S.self) dqr")
            XCTAssertLessThan(maxRelativeError(got.dkr, want.dkr), tolerance, "\(S.self) dkr")
            XCTAssertLessThan(maxRelativeError(got.dv, want.dv), tolerance, "\(S.self) dv")
            XCTAssertLessThan(maxRelativeError(got.dG, want.dG), tolerance, "\(S.self) dG")
        }
        check(Double.self, tolerance: 1e-10)
        check(Float.self, tolerance: 1e-4)
    }

    /// The chunked form keeps no running log-scale; every folded gate factor is at
    /// most 1, so its sums are the attention form's un-normalized ones, finite while u^p is (|u| < 2^(128/p)
    /// in Float32). Queries and keys scaled by 30 (|u| in the thousands, u^4 ~ 1e13): finite outputs and
    /// gradients in both forms, and the forms still agree.
    func testLargeScoresStayFiniteForPowerFour() {
        let x: HeadInput<Float> = randomHead(t: 64, d: 16, seed: 61, scale: 30)
        XCTAssertGreaterThan(zip(x.qr.prefix(16), x.kr.prefix(16)).map { abs($0 * $1) }.reduce(0, +) / 4, 1000, "|u| should be large")
        var gen = Gaussian(seed: 62)
        let dy: [Float] = gen.array(64 * 16)
        let (y, cache) = QuadraticAttention.forward(x, score: .power(4))
        let want = QuadraticAttention.backward(x, score: .power(4), y: y, cache: cache, dy: dy)
        let chunked = ChunkedAttention(headDimension: 16, power: 4, chunk: 16)
        let (yc, cc, _) = chunked.forward(x)
        let got = chunked.backward(x, y: yc, cache: cc, dy: dy)
        for (name, g) in [("attention", want), ("chunked", got)] {
            XCTAssertTrue((g.dqr + g.dkr + g.dv).allSatisfy(\.isFinite) && g.dG.allSatisfy(\.isFinite), "\(name): gradient not finite")
        }
        XCTAssertTrue((y + yc).allSatisfy(\.isFinite), "output not finite")
        XCTAssertLessThan(maxRelativeError(yc, y), 1e-3)
        // The whole layer, inputs scaled by 30, in both forms.
        var g = Gaussian(seed: 63)
        let input = Tensor<Float>([64, 64], g.array(64 * 64, scale: 30))
        for form in [AttentionForm.quadratic, .chunked] {
            let layer = SympowAttention<Float>(dModel: 64, heads: 4, power: 4, chunk: 16, kind: .conformalSympow)
            var rng = SplitMix64(seed: 64)
            layer.initialize(std: 0.3, residualStd: 0.3, using: &rng)
            layer.form = form
            let out = layer.forward(input, batch: 1, length: 64)
            XCTAssertTrue(out.array.allSatisfy(\.isFinite), "\(form): output not finite")
            XCTAssertTrue(layer.backward(out).array.allSatisfy(\.isFinite), "\(form): input gradient not finite")
            XCTAssertTrue(layer.dwQKVGR.array.allSatisfy(\.isFinite) && layer.dwO.array.allSatisfy(\.isFinite), "\(form): weight gradient not finite")
        }
    }
}
