import Foundation
import XCTest

/// The package root, found from this file's path.
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
/// The development corpus of 53 long public-domain books in the project's shared folder beside the checkout, or
/// `$LONGCRAWL_CORPUS_DEV` (CI points it nowhere to show that nothing else needs the shared folder).
public let corpusDev = ProcessInfo.processInfo.environment["LONGCRAWL_CORPUS_DEV"].map { URL(fileURLWithPath: $0) }
    ?? packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data/corpus-dev")

/// Whether the development corpus is there; a fresh clone has only data/sample.
public var hasCorpusDev: Bool { FileManager.default.fileExists(atPath: corpusDev.path) }

/// `corpusDev`, or a skip saying what the test needs.
public func requireCorpusDev() throws -> URL {
    guard hasCorpusDev else { throw XCTSkip("needs the development corpus at ../shared/data/corpus-dev (the project's shared folder)") }
    return corpusDev
}

/// The `longcrawl` executable built beside the test bundle.
public let longcrawlBinary: String = {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    if dir.lastPathComponent == "MacOS" { dir = dir.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
    return dir.appendingPathComponent("longcrawl").path
}()

/// A fresh temporary folder, removed at the end of the test.
public func temporaryFolder(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Runs a program and returns its exit status and output.
@discardableResult
public func runProcess(_ path: String, _ args: [String], stdin: URL? = nil, directory: URL? = nil,
                       environment: [String: String]? = nil) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    if let directory { p.currentDirectoryURL = directory }
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    if let stdin { p.standardInput = try FileHandle(forReadingFrom: stdin) }
    try p.run()
    // Drain stderr on its own thread so a chatty child never blocks on a full pipe.
    final class Box: @unchecked Sendable { var data = Data() }
    let e = Box()
    let drained = DispatchSemaphore(value: 0)
    DispatchQueue.global().async { e.data = err.fileHandleForReading.readDataToEndOfFile(); drained.signal() }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    drained.wait()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e.data, as: UTF8.self))
}

/// Starts a program in the background with its output discarded (to be killed by the test).
public func launch(_ path: String, _ args: [String]) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    return p
}

/// What replaying a fuzz regression must end in: the input read without error, or an error of one line that names
/// the file and then says `words`.
public enum FuzzOutcome: Equatable, CustomStringConvertible {
    case reads
    case error(_ words: String)

    public var description: String {
        switch self {
        case .reads: return "reads"
        case .error(let words): return "error \"\(words)\""
        }
    }
}

/// A dataset of the bundled sample (10 train windows, 2 heldout), made by the CLI, with `options` added to
/// `preprocess` (e.g. `--format zst --shard-windows 4`).
public func sampleDataset(_ test: XCTestCase, _ options: [String] = []) throws -> URL {
    let dir = try temporaryFolder(test).appendingPathComponent("ds")
    let r = try runProcess(longcrawlBinary, ["preprocess", packageRoot.appendingPathComponent("data/sample").path, "--out", dir.path,
                                             "--windows-per-doc", "all"] + options)
    XCTAssertEqual(r.status, 0, r.err)
    return dir
}

/// The inputs that once crashed fuzz target `target` (Fuzz/), kept in `Tests/MODULE/FuzzRegressions/TARGET/`, each
/// with its outcome pinned in `expected` (by file name): an input without one (its replay says how it ended), or an
/// entry without an input, fails.
public func fuzzRegressions(_ module: String, _ target: String, expected: [String: FuzzOutcome], line: UInt = #line) -> [(URL, FuzzOutcome?)] {
    let dir = packageRoot.appendingPathComponent("Tests/\(module)/FuzzRegressions/\(target)")
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    XCTAssertEqual(Set(names), Set(expected.keys), "\(target): the regressions and their pinned outcomes", line: line)
    return names.sorted().map { (dir.appendingPathComponent($0), expected[$0]) }
}

/// Replays one fuzz regression: `body` must end as `expected` says, an error being one line that starts with
/// `file`'s path and a colon.
public func replay(_ input: URL, naming file: URL, expected: FuzzOutcome?, _ body: () throws -> Void, line: UInt = #line) {
    let outcome: FuzzOutcome
    do { try body(); outcome = .reads } catch {
        let message = "\(error)"
        XCTAssertFalse(message.contains("\n"), "\(input.lastPathComponent): error is not one line: \(message)", line: line)
        XCTAssertTrue(message.hasPrefix(file.path + ": "), "\(input.lastPathComponent): error does not start with \(file.path): \(message)", line: line)
        outcome = .error(String(message.dropFirst(file.path.count + 2)))
    }
    switch (expected, outcome) {
    case (.error(let want)?, .error(let got)) where got.hasPrefix(want): break
    case (.reads?, .reads): break
    default: XCTFail("\(input.lastPathComponent): ended as \(outcome), expected \(expected.map(String.init(describing:)) ?? "no outcome pinned")", line: line)
    }
}
