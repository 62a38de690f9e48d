import ArgumentParser
import CLongCrawl
import Cluster
import Foundation
import Support

@main
struct LongCrawl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "longcrawl",
        abstract: "Preprocess, stream, train and evaluate on LongCrawl64-style long-document corpora.",
        subcommands: [PreprocessCommand.self, ImportCommand.self, ExperimentCommand.self, InspectCommand.self, VerifyCommand.self, SampleCommand.self, PackCommand.self, ExportCommand.self, TrainCommand.self, EvalCommand.self, ProbeCommand.self, GenerateCommand.self, SignalsCommand.self, Bench.self]
    )

    static let version = "0.1.0"

    /// A flag rather than ArgumentParser's `version:`, which is computed on every parse: H5get_libversion starts
    /// HDF5, and HDF5 started before `H5dont_atexit` closes open shard readers at exit (see HDF5Shard.swift).
    @Flag(help: "Print the version of longcrawl and of the HDF5, zstd, OpenBLAS and Open MPI libraries it loaded.")
    var version = false

    mutating func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        print(Self.versionText())
    }

    /// Ours, then the libraries this process actually loaded (not the headers it was built against).
    static func versionText() -> String {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        H5get_libversion(&major, &minor, &release)
        let mpi = String(cString: lc_mpi_library_version()).split(separator: ",").first.map(String.init) ?? "unknown"
        return """
            longcrawl \(version)
            HDF5 \(major).\(minor).\(release)
            zstd \(String(cString: ZSTD_versionString()))
            \(String(cString: openblas_get_config())) (core \(lc_blas_core_name().map { String(cString: $0) } ?? "unknown"))
            \(mpi)
            """
    }

    /// Debian's OpenBLAS 0.3.21 does not recognize recent Xeons and falls back to its SSE3 ("Prescott") kernels,
    /// 4-5x slower than the AVX-512 ones on this machine. The kernel set is chosen when the library loads, before
    /// any of our code runs, so when it picked a pre-AVX2 core on a CPU that has AVX2 or AVX-512 we set
    /// OPENBLAS_CORETYPE and exec ourselves once. An explicit OPENBLAS_CORETYPE is always respected.
    static func main() {
        // Batches, windows and activations are allocated and freed at a steady rhythm; glibc would serve each one
        // over 128 KiB with a fresh mmap, or give freed heap back, and fault its pages in again (serialized on the
        // process's memory map lock; zeroing the pages was 4% of a training step). Keep blocks below 1 GiB on the
        // heap (a [T, 4C] activation of `small` at T = 65,536 is 256 MiB) and the heap at its peak. And one heap for
        // all threads: the attention heads allocate on Dispatch's workers, whose own arenas have 64 MiB heaps that
        // send anything larger to mmap and fragment from step to step (peak RSS of `train` at 65,536 crept from
        // 3.85 to 4.12 GB over 8 steps; with one arena 3.77 GB, flat over 5). The few large allocations a step makes
        // do not contend for its lock.
        lc_malloc_keep_below(1 << 30)
        if getenv("OPENBLAS_CORETYPE") == nil, let preferred = lc_blas_preferred_core(),
           let current = lc_blas_core_name().map({ String(cString: $0).lowercased() }),
           ["prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "sandybridge", "unknown"].contains(current) {
            setenv("OPENBLAS_CORETYPE", preferred, 1)
            execv("/proc/self/exe", CommandLine.unsafeArgv)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            // Under mpirun a rank that fails takes the others down at once instead of leaving them in a collective.
            if World.shared.isDistributed {
                FileHandle.standardError.write(Data("error: rank \(World.shared.rank): \(fullMessage(for: error))\n".utf8))
                World.shared.abort(exitCode(for: error).rawValue)
            }
            exit(withError: error)
        }
    }
}

extension Split: ExpressibleByArgument {}
extension TextEncoding: ExpressibleByArgument {}
