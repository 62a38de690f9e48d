import FuzzSupport
@testable import Preprocess

/// The input as one corpus file: content sniffing (WARC, JSONL, text, after zstd or gzip decoding), then every
/// record. Parquet input (PAR1 at both ends) is left out: FuzzParquet fuzzes its reader.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = input(start, count)
    let par1: [UInt8] = Array("PAR1".utf8)
    if count >= 12, bytes.prefix(4).elementsEqual(par1), bytes.suffix(4).elementsEqual(par1) { return -1 }
    let url = writeInput(bytes, to: "input.jsonl")
    guard let reader = try? CorpusReader(inputs: [url.path]) else { return 0 }
    while let record = reader.next() { _ = record.ordinal }
    return 0
}
