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
    public init(_ url: URL, _ message: String) { self.path = url.path; self.message = message }
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
