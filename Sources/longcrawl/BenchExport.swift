import ArgumentParser
import Foundation
import Preprocess
import Shards
import Support

/// `longcrawl bench export`: `export --format zarr` of a dataset's split beside zarr-python writing the same array
/// (numcodecs' Blosc, LongCrawl64's chunks and codec) from memory, in the same run.
struct BenchExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Rows/s of export --format zarr beside zarr-python writing the same array with numcodecs' Blosc, same run.",
        discussion: "Example:\n  longcrawl bench export --data out/dev --split train"
    )

    @Option(help: "Dataset folder.")
    var data: String

    @Option(help: "Split to export.")
    var split: Split = .train

    @Option(help: "Runs of each; the best counts.")
    var runs: Int = 3

    func run() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var export = ZarrExport(dataset: URL(fileURLWithPath: data), split: split)
        export.order = .window
        var rows = 0
        // Ours reads and decompresses the shards too; zarr-python is handed the array in memory.
        let ours = try bestSeconds(runs) { rows = try export.run(out: dir.appendingPathComponent("ours"), force: true) }
        let script = """
        import sys, time
        import numpy as np, zarr
        from numcodecs import Blosc
        data, runs = np.asarray(zarr.open_array(sys.argv[1], mode="r")[:]), int(sys.argv[3])
        best = float("inf")
        for _ in range(runs):
            t0 = time.perf_counter()
            a = zarr.open_array(sys.argv[2], mode="w", shape=data.shape, chunks=(2048, 2048), dtype="<u2", zarr_format=2,
                                compressor=Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE), fill_value=0)
            a[:] = data
            best = min(best, time.perf_counter() - t0)
        print(best)
        """
        let py = try capture(["python3", "-c", script, dir.appendingPathComponent("ours/\(split.rawValue).zarr").path,
                              dir.appendingPathComponent("python.zarr").path, String(runs)])
        guard py.status == 0, let python = Double(String(decoding: py.out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ValidationError("the zarr-python baseline failed (zarr and numcodecs installed? tools/setup.sh)")
        }
        let mb = Double(rows * windowLength * 2) / 1e6
        print("\(split.rawValue): \(rows) rows (\(String(format: "%.1f", mb)) MB of uint16) in LongCrawl64's layout; best of \(runs) runs each")
        print(String(format: "zarr-python + numcodecs Blosc, from memory        %8.1f MB/s", mb / python))
        print(String(format: "longcrawl export --format zarr, from the shards   %8.1f MB/s  (%.2fx zarr-python)", mb / ours, python / ours))
    }
}
