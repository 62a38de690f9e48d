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

/// The inputs that once crashed fuzz target `target` (Fuzz/), kept in `Tests/MODULE/FuzzRegressions/TARGET/`.
public func fuzzRegressions(_ module: String, _ target: String) -> [URL] {
    let dir = packageRoot.appendingPathComponent("Tests/\(module)/FuzzRegressions/\(target)")
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    return names.sorted().map { dir.appendingPathComponent($0) }
}

/// Replays one fuzz regression: `body` may succeed or throw, but a thrown error must be one line naming `file`.
public func replay(_ input: URL, naming file: URL, _ body: () throws -> Void, line: UInt = #line) {
    do { try body() } catch {
        let message = "\(error)"
        XCTAssertFalse(message.contains("\n"), "\(input.lastPathComponent): error is not one line: \(message)", line: line)
        XCTAssertTrue(message.contains(file.path), "\(input.lastPathComponent): error does not name \(file.path): \(message)", line: line)
    }
}
