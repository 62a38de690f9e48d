import CLongCrawl
import Foundation
import Support

/// A rank's record of its first pass, so a distributed run with dedup reads, fetches and tokenizes each input once:
/// the first pass decides the dedup candidates and writes here what the writing pass needs of every record (its
/// outcome, the tokens of a document's windows, the progress), one zstd frame a piece; the writing pass replays it
/// instead of reading the inputs again. Local to the rank and the run: written under a hidden `.tmp` name (a killed
/// run's is removed by the next one) and deleted when the rank is done.
///
/// A frame: raw length and compressed length (UInt64, little-endian), then the zstd frame (with its checksum). Inside: the piece's progress
/// bytes (Int64) and outcome count (UInt32), then per outcome a tag (0 dropped, 1 document) and its fields; strings
/// as UInt32 length and UTF-8, tokens as UInt32 count and UInt16 each.
final class ScratchWriter {
    let url: URL
    private let handle: FileHandle
    private var raw: [UInt8] = []
    /// Level 1, each frame with its checksum: a scratch corrupted on disk fails its replay instead of changing it.
    private let context: OpaquePointer

    init(_ url: URL) throws {
        self.url = url
        guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
            throw FileError(url, "cannot create the first pass's scratch (\(String(cString: strerror(errno))))")
        }
        handle = try FileHandle(forWritingTo: url)
        context = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, 1)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
    }

    deinit { try? handle.close(); ZSTD_freeCCtx(context) }

    /// Appends one piece; a document keeps only the tokens of the windows it gives (the rest are never written).
    func append(_ piece: Outcomes, windowsPerDocument: Int?) throws {
        raw.removeAll(keepingCapacity: true)
        int(piece.progressBytes)
        u32(piece.records.count)
        for outcome in piece.records {
            switch outcome {
            case .dropped(let d):
                raw.append(0)
                int(d.ordinal); string(d.origin); string(d.reason.name); string(d.detail); int(d.bytes ?? -1)
                raw.append(d.fatal ? 1 : 0)
            case .document(let d):
                raw.append(1)
                int(d.ordinal); string(d.id); int(d.part); int(d.textBytes)
                let n = min(d.tokens.count / windowLength, windowsPerDocument ?? .max) * windowLength
                u32(n)
                d.tokens[..<n].withUnsafeBytes { raw += $0 }
            }
        }
        var frame = [UInt8](repeating: 0, count: 16 + ZSTD_compressBound(raw.count))
        let n = frame.withUnsafeMutableBytes { out in raw.withUnsafeBytes { ZSTD_compress2(context, out.baseAddress! + 16, out.count - 16, $0.baseAddress, $0.count) } }
        guard ZSTD_isError(n) == 0 else { throw FileError(url, "zstd: \(String(cString: ZSTD_getErrorName(n)))") }
        frame.withUnsafeMutableBytes {
            $0.storeBytes(of: UInt64(raw.count).littleEndian, toByteOffset: 0, as: UInt64.self)
            $0.storeBytes(of: UInt64(n).littleEndian, toByteOffset: 8, as: UInt64.self)
        }
        do { try handle.write(contentsOf: frame[..<(16 + n)]) } catch {
            throw FileError(url, "cannot write the first pass's scratch (\(error.localizedDescription))")
        }
    }

    private func int(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { raw += $0 } }
    private func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { raw += $0 } }
    private func string(_ s: String) { u32(s.utf8.count); raw += s.utf8 }
}

/// Reads back what `ScratchWriter` wrote, a piece at a time, in order.
final class ScratchReader: OutcomeSource {
    let url: URL
    private(set) var records = 0
    private let handle: FileHandle
    private var raw: [UInt8] = []
    private var at = 0

    init(_ url: URL) throws {
        self.url = url
        do { handle = try FileHandle(forReadingFrom: url) } catch { throw FileError(url, "cannot open the first pass's scratch") }
    }

    deinit { try? handle.close() }

    func stop() {}

    /// The next piece, or nil at the end of the file.
    func next() throws -> Outcomes? {
        guard let header = try handle.read(upToCount: 16), !header.isEmpty else { return nil }
        guard header.count == 16 else { throw FileError(url, "truncated frame header") }
        let size = Int(UInt64(littleEndian: header.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        let packed = Int(UInt64(littleEndian: header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) }))
        guard let frame = try handle.read(upToCount: packed), frame.count == packed else { throw FileError(url, "truncated frame") }
        raw = [UInt8](repeating: 0, count: size)
        let n = raw.withUnsafeMutableBytes { out in frame.withUnsafeBytes { ZSTD_decompress(out.baseAddress, size, $0.baseAddress, packed) } }
        guard ZSTD_isError(n) == 0, n == size else { throw FileError(url, "corrupt frame") }
        at = 0
        var piece = Outcomes(records: [], progressBytes: try int())
        let count = try u32()
        piece.records.reserveCapacity(count)
        for _ in 0..<count {
            switch try byte() {
            case 0:
                var d = DroppedRecord(ordinal: try int(), origin: try string(), reason: DropReason(try string()), detail: try string(), bytes: nil)
                let b = try int()
                d.bytes = b < 0 ? nil : b
                d.fatal = try byte() != 0
                piece.records.append(.dropped(d))
            case 1:
                let ordinal = try int(), id = try string(), part = try int(), textBytes = try int(), n = try u32()
                let tokens = try bytes(2 * n).withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
                piece.records.append(.document(.init(ordinal: ordinal, id: id, part: part, textBytes: textBytes, tokens: tokens, fingerprint: [])))
            default: throw FileError(url, "corrupt record tag")
            }
        }
        records += count
        guard at == raw.count else { throw FileError(url, "corrupt frame (\(raw.count - at) bytes left over)") }
        return piece
    }

    private func bytes(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n <= raw.count - at else { throw FileError(url, "corrupt frame (a field runs past its end)") }
        defer { at += n }
        return raw[at..<(at + n)]
    }
    private func byte() throws -> UInt8 { try bytes(1).first! }
    private func int() throws -> Int { Int(Int64(littleEndian: try bytes(8).withUnsafeBytes { $0.loadUnaligned(as: Int64.self) })) }
    private func u32() throws -> Int { Int(UInt32(littleEndian: try bytes(4).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })) }
    private func string() throws -> String { String(decoding: try bytes(try u32()), as: UTF8.self) }
}
