import Foundation
import FuzzSupport
@testable import Shards
@testable import Streaming
@testable import Support

/// A dataset folder per seed of `Fuzz/Corpus/FuzzHDF5Shard`, whose `index.json` lists the seed as its one shard (size,
/// SHA-256, windows, split): an input is read as that shard, through `WindowCatalog`, the training reader's checked open.
let datasets: [(folder: URL, entry: ShardEntry)] = {
    let seeds = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Corpus/FuzzHDF5Shard")
    let names = (try? FileManager.default.contentsOfDirectory(atPath: seeds.path).sorted()) ?? []
    return names.enumerated().map { k, name in
        let seed = seeds.appendingPathComponent(name)
        guard let reader = try? ShardReader(url: seed, format: .hdf5), let digest = try? sha256(of: seed) else { fatalError("\(seed.path): not a good shard") }
        let folder = scratch.appendingPathComponent("dataset-\(k)")
        let entry = ShardEntry(file: ShardFormat.hdf5.fileName(split: reader.split, number: 0), format: .hdf5, split: reader.split,
                               windows: reader.windowCount, bytes: digest.bytes, sha256: digest.hex)
        var index = DatasetIndex(build: nil)
        index.shards = [entry]
        index.complete = true
        try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try! index.write(to: folder)
        return (folder, entry)
    }
}()

nonisolated(unsafe) var window = [UInt16](repeating: 0, count: windowLength)

/// The input as the shard of each dataset whose seed has its size (the first dataset when none has): the size and
/// SHA-256 against index.json, then attributes, shapes, `/documents` and every window (Fletcher32, zstd).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let sized = datasets.filter { $0.entry.bytes == count }
    for (folder, entry) in sized.isEmpty ? Array(datasets.prefix(1)) : sized {
        writeInput(input(start, count), to: "\(folder.lastPathComponent)/\(entry.file)")
        guard let catalog = try? WindowCatalog(directory: folder, split: entry.split) else { continue }
        for id in 0..<catalog.count {
            guard (try? window.withUnsafeMutableBufferPointer { try catalog.read(id, into: $0) }) != nil else { break }
        }
    }
    return 0
}
