import Foundation

/// Tokens per window: LongCrawl64 cuts every kept document to windows of exactly this length.
public let windowLength = 65_536

/// GPT-2's vocabulary, which every dataset is tokenized with.
public enum GPT2 {
    /// Token ids are below this.
    public static let vocabularySize = 50_257
    /// `<|endoftext|>`, the last id: the document separator of other trainers' token files.
    public static let endOfText: UInt16 = 50_256
    /// The model's embedding rows: the vocabulary padded to a multiple of 64, as nanoGPT does.
    public static let paddedVocabularySize = 50_304
}

/// The two splits of a dataset. A document goes to one by its id alone (`heldoutScore`). Coded as its name, also
/// as a dictionary key.
public enum Split: String, Codable, CodingKeyRepresentable, CaseIterable, Sendable {
    case train, heldout
}

/// A one-line error about options, configs, data or state that is not one file's fault (that is `FileError`):
/// the message says what is wrong and, where there is one, names the thing.
public struct LongCrawlError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// A one-line error naming the file and what is wrong with it: `PATH: message`.
public struct FileError: Error, CustomStringConvertible, LocalizedError {
    public let path: String
    let message: String
    public init(_ url: URL, _ message: String) { self.path = url.location; self.message = message }
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
    public var errorDescription: String? { description }
}

/// LongCrawl64's release, as Manifest AI's article describes it (docs/LONGCRAWL64.md).
public enum LongCrawl64 {
    static let documents = 6_661_465
    static let heldoutDocuments = 52_131
    /// The release's heldout share, the default of `--recipe longcrawl64`.
    public static let heldoutFraction = Double(heldoutDocuments) / Double(documents)
    /// Rows and columns of one zarr chunk of the release's arrays.
    public static let chunkRows = 2048, chunkColumns = 2048
}

/// This process's resident memory as Linux reports it in `/proc/self/status`, in bytes (0 where it cannot be read).
public enum ResidentMemory {
    /// The peak since the process started or since `resetPeak()`.
    public static var peak: Int { status("VmHWM:") }

    /// Starts the peak again from the memory resident now (Linux 4.0+, `/proc/self/clear_refs`), so a stage's peak
    /// excludes what ran before it.
    public static func resetPeak() { try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8) }

    private static func status(_ field: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
              let kB = Int(line.dropFirst(field.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") else { return 0 }
        return kB * 1024
    }
}

extension URL {
    /// How messages name it: a file's path, any other URL whole (`https://host/path`).
    public var location: String { isFileURL ? path : absoluteString }
}
