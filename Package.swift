// swift-tools-version:6.0
import PackageDescription

// Supported: Linux x86-64 (Debian/Ubuntu), with AVX2/FMA. SwiftPM has no Linux platform to declare, so none is
// declared; the include and library paths below are Debian's multiarch ones.
// Debian keeps the serial HDF5 and OpenBLAS headers off the default path; Swift's clang importer needs them too.
let cIncludes = ["-Xcc", "-I/usr/include/hdf5/serial", "-Xcc", "-I/usr/include/x86_64-linux-gnu/openblas-pthread"]
// Hot numeric loops need AVX2/FMA: without it every SIMD multiply-add becomes a scalar call.
let fast: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell", "-cross-module-optimization"] + cIncludes)]
// Every library module and the CLI build in Swift 6 mode (strict concurrency checked by the compiler); the tests in 5.
let swift6: [SwiftSetting] = fast + [.swiftLanguageMode(.v6)]

let package = Package(
    name: "LongCrawl",
    products: [
        .executable(name: "longcrawl", targets: ["longcrawl"]),
        // For the fuzz targets in Fuzz/ (their own package, so the normal build never compiles them).
        .library(name: "LongCrawlCore", targets: ["Support", "Shards", "Streaming", "Preprocess", "Training", "Model"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(
            name: "CLongCrawl",
            cSettings: [
                .unsafeFlags(["-I/usr/include/hdf5/serial", "-I/usr/include/x86_64-linux-gnu/openblas-pthread",
                               "-I/usr/lib/x86_64-linux-gnu/openmpi/include", "-O2", "-march=haswell"]),
            ],
            linkerSettings: [
                .unsafeFlags(["-L/usr/lib/x86_64-linux-gnu/openblas-pthread", "-L/usr/lib/x86_64-linux-gnu/openmpi/lib"]),
                .linkedLibrary("hdf5_serial"),
                .linkedLibrary("zstd"),
                .linkedLibrary("openblas"),
                .linkedLibrary("crypto"),
                .linkedLibrary("xxhash"),
                .linkedLibrary("mpi"),
                .linkedLibrary("z"),
                .linkedLibrary("snappy"),
                .linkedLibrary("blosc"),
                .linkedLibrary("curl"),
            ]
        ),
        // What every module uses and none owns: constants, splits, file errors, atomic writes, the folder lock,
        // progress lines, the random generator and hashes.
        .target(name: "Support", dependencies: ["CLongCrawl"], swiftSettings: swift6),
        .target(name: "Tokenizer", dependencies: ["Support", "CLongCrawl"], swiftSettings: swift6),
        .target(name: "Cluster", dependencies: ["CLongCrawl"], swiftSettings: swift6),
        .target(name: "Shards", dependencies: ["Support", "CLongCrawl"], swiftSettings: swift6),
        .target(name: "Preprocess", dependencies: ["Support", "Tokenizer", "Shards", "CLongCrawl", "Cluster"], swiftSettings: swift6),
        .target(name: "Streaming", dependencies: ["Support", "Shards"], swiftSettings: swift6),
        .target(name: "Tensor", dependencies: ["CLongCrawl"], swiftSettings: swift6),
        .target(name: "Model", dependencies: ["Support", "Tensor"], swiftSettings: swift6),
        .target(name: "Training", dependencies: ["Support", "Model", "Streaming", "Shards", "Tensor", "Cluster"], swiftSettings: swift6),
        .executableTarget(
            name: "longcrawl",
            dependencies: [
                "Support", "Tokenizer", "Shards", "Preprocess", "Streaming", "Tensor", "Model", "Training", "Cluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swift6
        ),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "PreprocessTests", dependencies: ["Preprocess", "Shards", "Support", "Tokenizer", "TestSupport"], exclude: ["FuzzRegressions", "Fixtures"], swiftSettings: [.unsafeFlags(cIncludes)]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "Support", "TestSupport"], exclude: ["Fixtures"], swiftSettings: [.unsafeFlags(cIncludes)]),
        .testTarget(name: "ShardsTests", dependencies: ["Shards", "Support", "TestSupport"], exclude: ["FuzzRegressions"], swiftSettings: [.unsafeFlags(cIncludes)]),
        .testTarget(name: "StreamingTests", dependencies: ["Streaming", "Shards", "Support", "TestSupport"], swiftSettings: [.unsafeFlags(cIncludes)]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "Tensor", "Support"], swiftSettings: [.unsafeFlags(cIncludes)]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Model", "Streaming", "Shards", "Support", "Tokenizer", "Tensor", "TestSupport"], exclude: ["FuzzRegressions"], swiftSettings: [.unsafeFlags(cIncludes)]),
        .testTarget(name: "TensorTests", dependencies: ["Tensor"], swiftSettings: [.unsafeFlags(cIncludes)]),
    ],
    swiftLanguageModes: [.v5]
)
