import Foundation
import TestSupport
import XCTest

/// What a stranger gets: the binary copied anywhere, its version, and files that match the documented schemas.
final class InstalledBinaryTests: XCTestCase {
    /// The environment of the test without the vocabulary override, so only the built-in vocabulary can serve.
    var plainEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.filter { $0.key != "LONGCRAWL_GPT2_DIR" }
    }

    /// A copy of the binary in a folder of its own, run from `/`, tokenizes with the vocabulary compiled into it;
    /// `--tokenizer` and `LONGCRAWL_GPT2_DIR` still override it.
    func testCopiedBinaryRunsFromRootWithItsBuiltInVocabulary() throws {
        let tmp = try temporaryFolder(self)
        let bin = tmp.appendingPathComponent("bin/longcrawl"), books = tmp.appendingPathComponent("books"), out = tmp.appendingPathComponent("ds")
        try FileManager.default.createDirectory(at: bin.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: books, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: longcrawlBinary, toPath: bin.path)
        try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("data/sample/great_gatsby.txt"), to: books.appendingPathComponent("great_gatsby.txt"))
        let root = URL(fileURLWithPath: "/")

        let run = try runProcess(bin.path, ["preprocess", books.path, "--out", out.path], directory: root, environment: plainEnvironment)
        XCTAssertEqual(run.status, 0, run.err)
        XCTAssertTrue(run.out.contains("kept 1"), run.out)
        let shown = try runProcess(bin.path, ["inspect", out.path, "--split", "train", "--window", "0", "--lines", "3"], directory: root, environment: plainEnvironment)
        XCTAssertEqual(shown.status, 0, shown.err)
        XCTAssertTrue(shown.out.contains("The Great Gatsby"), shown.out)

        var badDirectory = plainEnvironment
        badDirectory["LONGCRAWL_GPT2_DIR"] = "/nonexistent"
        let env = try runProcess(bin.path, ["preprocess", books.path, "--out", out.path, "--force"], directory: root, environment: badDirectory)
        XCTAssertNotEqual(env.status, 0)
        XCTAssertTrue(env.err.contains("/nonexistent/encoder.json"), env.err)
        let option = try runProcess(bin.path, ["preprocess", books.path, "--out", out.path, "--force", "--tokenizer", tmp.path],
                                    directory: root, environment: plainEnvironment)
        XCTAssertNotEqual(option.status, 0)
        XCTAssertTrue(option.err.contains(tmp.appendingPathComponent("encoder.json").path), option.err)
    }

    /// `--version` names the build and the libraries it loaded.
    func testVersionNamesTheLibraries() throws {
        let r = try runProcess(longcrawlBinary, ["--version"])
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 5, r.out)
        for (line, pattern) in zip(lines, [#"^longcrawl \d+\.\d+\.\d+$"#, #"^HDF5 \d+\.\d+\.\d+$"#, #"^zstd \d+\.\d+\.\d+$"#,
                                           #"^OpenBLAS \d+\.\d+\.\d+.* \(core \w+\)$"#, #"^Open MPI v\d+\.\d+"#]) {
            XCTAssertNotNil(line.range(of: pattern, options: .regularExpression), "\(line.debugDescription) does not match \(pattern)")
        }
    }

    /// A real index.json (preprocessing data/sample) and a real state.json (a two-step `train`) validate against
    /// docs/schema, and a file missing a required key does not, so the check can fail.
    func testIndexAndStateMatchTheirSchemas() throws {
        let data = try sampleDataset(self)
        let run = try temporaryFolder(self).appendingPathComponent("run")
        let train = try runProcess(longcrawlBinary, ["train", "--data", data.path, "--config", packageRoot.appendingPathComponent("data/configs/tiny.json").path,
                                                     "--context", "256", "--batch", "1", "--steps", "2", "--order", "sequential", "--carry-state",
                                                     "--out", run.path])
        XCTAssertEqual(train.status, 0, train.err)
        let index = data.appendingPathComponent("index.json"), state = run.appendingPathComponent("checkpoints/step-000002/state.json")
        for (file, schema, required) in [(index, "index.schema.json", "shards"), (state, "state.schema.json", "cursors")] {
            let schemaPath = packageRoot.appendingPathComponent("docs/schema/" + schema).path
            let valid = try validate(file, schemaPath)
            XCTAssertEqual(valid.status, 0, "\(file.path) against \(schema): \(valid.err)")
            var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
            object[required] = nil
            let broken = try temporaryFolder(self).appendingPathComponent(file.lastPathComponent)
            try JSONSerialization.data(withJSONObject: object).write(to: broken)
            let invalid = try validate(broken, schemaPath)
            XCTAssertEqual(invalid.status, 1, "a \(file.lastPathComponent) without '\(required)' passed: \(invalid.err)")
            XCTAssertTrue(invalid.err.contains("'\(required)' is a required property"), invalid.err)
        }
    }

    /// Python's jsonschema (draft 2020-12, formats checked): status 0 when `file` is valid, 1 with the reason on stderr.
    private func validate(_ file: URL, _ schema: String) throws -> (status: Int32, out: String, err: String) {
        let script = """
            import json, sys, jsonschema
            schema = json.load(open(sys.argv[1]))
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
            errors = [e.message for e in validator.iter_errors(json.load(open(sys.argv[2])))]
            sys.stderr.write("\\n".join(errors))
            sys.exit(1 if errors else 0)
            """
        return try runProcess("/usr/bin/env", ["python3", "-c", script, schema, file.path])
    }
}
