// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets, one per parser of outside bytes. A package of their own, so the main package's build never
// compiles them; build with Fuzz/build.sh (swift build -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library).
let targets = [
    "FuzzJSONL", "FuzzDatasetIndex", "FuzzTrainState", "FuzzTransformerConfig", "FuzzSafetensors",
    "FuzzSeekableZstd", "FuzzHDF5Shard", "FuzzEvalWindows", "FuzzZarray", "FuzzBloscChunk",
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
    swiftLanguageModes: [.v5]
)
