// swift-tools-version:5.4
import PackageDescription

// libFuzzer targets, one per parser of outside bytes. A package of their own, so the main package's build never
// compiles them; build with Fuzz/build.sh (swift build -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library).
// Tools version 5.4 on purpose: from 5.5 SwiftPM links every executable with main renamed to MODULE_main (so tests
// can link executables), and a libFuzzer target has no main of its own: libFuzzer's is the entry point.
let targets = [
    "FuzzJSONL", "FuzzDatasetIndex", "FuzzTrainState", "FuzzTransformerConfig", "FuzzSafetensors",
    "FuzzSeekableZstd", "FuzzHDF5Shard", "FuzzEvalWindows", "FuzzZarray", "FuzzBloscChunk", "FuzzParquet",
]

let package = Package(
    name: "LongCrawlFuzz",
    dependencies: [.package(name: "LongCrawl", path: "..")],
    targets: [
        .target(name: "FuzzSupport"),
    ] + targets.map {
        .executableTarget(name: $0, dependencies: ["FuzzSupport", .product(name: "LongCrawlCore", package: "LongCrawl")],
                          swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/include/hdf5/serial"])])
    },
    swiftLanguageVersions: [.v5]
)
