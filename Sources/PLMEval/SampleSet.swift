import PLMCore

// The reader of an evaluation folder (Formats/SAMPLES.md): `samples.jsonl`, one sample per line,
// and the images and videos it names. Every rule of the spec is checked here, line by line, so the
// runner only ever sees samples whose files exist, are images where images are expected, and lie
// inside the folder.

/// The reader's limits, checked before anything is allocated from sizes taken from the input.
public enum SampleLimits {
    /// `samples.jsonl` as a whole.
    public static let fileBytes = 64 << 20
    public static let lines = 100_000
    public static let lineBytes = 1 << 20
    public static let idBytes = 200
    public static let imagesPerSample = 64
    public static let messagesPerSample = 256
    public static let partsPerMessage = 256
    public static let imageBytes = 64 << 20
    public static let videoBytes = 2 << 30
    public static let framesPerVideo = 1024
}

/// Who speaks in a chat message.
public enum SampleRole: String, Sendable, Equatable, CaseIterable {
    case system, user, assistant
}

/// One item of a message's content, in the transformers form.
public enum SamplePart: Sendable, Equatable {
    case text(String)
    /// The `index`-th entry of the sample's `images` (markers take the images in order).
    case image(index: Int)
    case video
}

public struct SampleMessage: Sendable, Equatable {
    public let role: SampleRole
    public let parts: [SamplePart]

    public init(role: SampleRole, parts: [SamplePart]) {
        self.role = role
        self.parts = parts
    }
}

/// A video: a file the image processor decodes, or a folder of frames (PNG/JPEG) in name order.
public enum VideoSource: Sendable, Equatable {
    case file(String)
    case frames(folder: String, frames: [String])

    /// Every file the video reads, relative to the samples folder, in order.
    public var files: [String] {
        switch self {
        case .file(let path): return [path]
        case .frames(_, let frames): return frames
        }
    }
}

/// One valid sample. Paths are relative to the samples folder and already checked.
public struct Sample: Sendable, Equatable {
    public let id: String
    /// 1-based line of `samples.jsonl`.
    public let line: Int
    public let images: [String]
    public let video: VideoSource?
    /// The conversation, always as messages: a plain `prompt` becomes one user message whose
    /// parts are the image markers, then the video marker, then the text (with `system` as a
    /// system message first), which is the order PLM's chat template renders anyway.
    public let messages: [SampleMessage]
    public let answer: String?

    public var isTextOnly: Bool { images.isEmpty && video == nil }
}

/// Why a path in a sample is refused.
public enum PathProblem: Sendable, Equatable, CustomStringConvertible {
    case empty
    case absolute
    /// A `..`, `.` or empty component, a backslash or a NUL: the spec wants plain relative names.
    case badComponent(String)
    /// It exists but resolves (through a symbolic link) outside the samples folder.
    case outsideFolder
    case missing
    case notAFile
    case notAFolderOrFile
    case tooLarge(bytes: Int, limit: Int)
    case notPNGOrJPEG
    case noFrames

    public var description: String {
        switch self {
        case .empty: return "is empty"
        case .absolute: return "is absolute (paths are relative to the samples folder)"
        case .badComponent(let c): return "has the component \"\(c)\" (no '..', '.', empty components, backslashes or NUL)"
        case .outsideFolder: return "resolves outside the samples folder"
        case .missing: return "does not exist"
        case .notAFile: return "is not a regular file"
        case .notAFolderOrFile: return "is neither a file nor a folder of frames"
        case .tooLarge(let bytes, let limit): return "is \(formatBytes(bytes)), more than the limit of \(formatBytes(limit))"
        case .notPNGOrJPEG: return "is neither PNG nor JPEG (by its first bytes)"
        case .noFrames: return "is a folder without .png/.jpg/.jpeg frames"
        }
    }
}

/// What is wrong with one line. `field` is a path into the line's object, e.g.
/// `messages[1].content[0].type`.
public enum SampleProblem: Sendable, Equatable, CustomStringConvertible {
    case lineTooLong(bytes: Int, limit: Int)
    case invalidJSON(column: Int, reason: String)
    case notAnObject(found: String)
    case missingField(String)
    case wrongType(field: String, expected: String, found: String)
    case emptyID
    case idTooLong(bytes: Int, limit: Int)
    case duplicateID(String, firstLine: Int)
    case promptAndMessages
    case noPrompt
    case emptyPrompt
    case systemWithMessages
    case imagesAndVideo
    case tooMany(field: String, count: Int, limit: Int)
    case badPath(field: String, path: String, PathProblem)
    case unknownRole(field: String, role: String)
    case unknownPartType(field: String, type: String)
    /// An image/video part naming its own file (`url`, `path`, `image`): files come from
    /// `images`/`video` only, so the two can never disagree.
    case partWithSource(field: String, key: String)
    case mediaOutsideUserMessage(field: String)
    case systemNotFirst(field: String)
    case lastMessageNotUser(role: String)
    case noMessages
    case imageCountMismatch(markers: Int, images: Int)
    case videoMarkerMismatch(markers: Int, hasVideo: Bool)
    case emptyAnswer

    public var description: String {
        switch self {
        case .lineTooLong(let b, let l): return "line is \(b) bytes, more than the limit of \(l)"
        case .invalidJSON(let column, let reason): return "invalid JSON at column \(column): \(reason)"
        case .notAnObject(let found): return "expected a JSON object, found \(found)"
        case .missingField(let f): return "\(f): missing"
        case .wrongType(let f, let expected, let found): return "\(f): expected \(expected), found \(found)"
        case .emptyID: return "id: empty"
        case .idTooLong(let b, let l): return "id: \(b) bytes, more than the limit of \(l)"
        case .duplicateID(let id, let first): return "id: \"\(id)\" already used on line \(first)"
        case .promptAndMessages: return "prompt and messages: give one of them, not both"
        case .noPrompt: return "prompt: missing (give prompt or messages)"
        case .emptyPrompt: return "prompt: empty and the sample has no image or video"
        case .systemWithMessages: return "system: not allowed with messages (put a system message first instead)"
        case .imagesAndVideo: return "images and video: a sample has images or a video, not both"
        case .tooMany(let f, let c, let l): return "\(f): \(c) entries, more than the limit of \(l)"
        case .badPath(let f, let p, let problem): return "\(f): \"\(p)\" \(problem)"
        case .unknownRole(let f, let r): return "\(f): unknown role \"\(r)\" (system, user or assistant)"
        case .unknownPartType(let f, let t): return "\(f): unknown content type \"\(t)\" (text, image or video)"
        case .partWithSource(let f, let k): return "\(f): has \"\(k)\"; image and video files are listed in images/video only"
        case .mediaOutsideUserMessage(let f): return "\(f): images and videos belong in user messages"
        case .systemNotFirst(let f): return "\(f): a system message must be the first message"
        case .lastMessageNotUser(let r): return "messages: the last message is \(r), it must be user (the model answers it)"
        case .noMessages: return "messages: empty"
        case .imageCountMismatch(let m, let i): return "messages: \(m) image markers but \(i) images"
        case .videoMarkerMismatch(let m, let has):
            return has ? "messages: \(m) video markers, a sample with a video needs exactly one" : "messages: \(m) video markers but no video"
        case .emptyAnswer: return "answer: empty (omit it to score the reference model's own answer)"
        }
    }
}

/// A bad line: where, which sample (if its id could be read), what.
public struct SampleLineError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let id: String?
    public let problem: SampleProblem

    public var description: String {
        "samples.jsonl:\(line)" + (id.map { " (\($0))" } ?? "") + ": \(problem)"
    }
}

/// Why a samples folder cannot be read at all, or (from `requireClean`) which lines are bad.
public enum SampleSetError: Error, Sendable, Equatable, CustomStringConvertible {
    case folderMissing(String)
    case samplesFileMissing(String)
    case samplesFileTooLarge(path: String, bytes: Int, limit: Int)
    case tooManyLines(path: String, limit: Int)
    case unreadable(FileAccessError)
    case noSamples(path: String)
    case badLines([SampleLineError])

    public var description: String {
        switch self {
        case .folderMissing(let p): return "\(p): not a folder"
        case .samplesFileMissing(let p): return "\(p): missing (a samples folder holds samples.jsonl)"
        case .samplesFileTooLarge(let p, let b, let l): return "\(p): \(formatBytes(b)), more than the limit of \(formatBytes(l))"
        case .tooManyLines(let p, let l): return "\(p): more than \(formatThousands(l)) lines"
        case .unreadable(let e): return e.description
        case .noSamples(let p): return "\(p): no samples"
        case .badLines(let lines):
            let shown = lines.prefix(20).map(\.description).joined(separator: "\n")
            return shown + (lines.count > 20 ? "\n… and \(lines.count - 20) more bad lines" : "")
        }
    }
}

/// A read samples folder: the valid samples in file order and the bad lines.
public struct SampleSet: Sendable {
    /// The folder as given.
    public let folder: String
    public let samples: [Sample]
    /// Every bad line, in file order. Empty for a clean file.
    public let problems: [SampleLineError]

    /// Reads and checks `folder/samples.jsonl` and every file it names. Problems of single lines
    /// are collected in `problems`; only a folder that cannot be read at all throws.
    public init(folder: String) throws(SampleSetError) {
        let trimmed = folder.count > 1 && folder.hasSuffix("/") ? String(folder.dropLast()) : folder
        guard SampleFiles.kind(of: trimmed) == .directory, let root = SampleFiles.resolvedPath(trimmed) else {
            throw .folderMissing(folder)
        }
        let path = trimmed + "/samples.jsonl"
        guard case .regular(let size) = SampleFiles.kind(of: path) else { throw .samplesFileMissing(path) }
        guard size <= SampleLimits.fileBytes else {
            throw .samplesFileTooLarge(path: path, bytes: size, limit: SampleLimits.fileBytes)
        }
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .unreadable(error) }
        var reader = LineReader(root: root, folder: trimmed)
        try reader.readAll(file.bytes, path: path)
        self.folder = trimmed
        samples = reader.samples
        problems = reader.problems
        if samples.isEmpty && problems.isEmpty { throw .noSamples(path: path) }
    }

    /// Throws `.badLines` when any line is bad: the default unless the user asked to skip them.
    public func requireClean() throws(SampleSetError) {
        if !problems.isEmpty { throw .badLines(problems) }
    }

    /// The path of a sample's file as the runner opens it.
    public func path(of relative: String) -> String { folder + "/" + relative }

    /// The dataset hash of Formats/SAMPLES.md: SHA-256 over `samples.jsonl` and then every file the
    /// valid samples name, in first-use order, each once, each framed by its length.
    public func datasetHash() throws(SampleSetError) -> String {
        let hasher = SHA256Hasher()
        hasher.update("plmq-samples-v1\n")
        func add(_ name: String) throws(SampleSetError) {
            let file: MappedFile
            do { file = try MappedFile(path: path(of: name)) } catch { throw .unreadable(error) }
            hasher.update(DatasetHashing.frame(name: name, size: file.size))
            hasher.update(file.bytes)
        }
        try add("samples.jsonl")
        var seen: Set<String> = ["samples.jsonl"]
        for sample in samples {
            for name in sample.images + (sample.video?.files ?? []) where seen.insert(name).inserted {
                try add(name)
            }
        }
        return hasher.finalizeHex()
    }
}

enum DatasetHashing {
    /// u64 LE name length, the name's UTF-8 bytes, u64 LE file length.
    static func frame(name: String, size: Int) -> [UInt8] {
        let utf8 = Array(name.utf8)
        return littleEndian64(utf8.count) + utf8 + littleEndian64(size)
    }

    static func littleEndian64(_ v: Int) -> [UInt8] {
        let u = UInt64(v)
        return (0..<8).map { UInt8(truncatingIfNeeded: u >> (8 * UInt64($0))) }
    }
}

// MARK: - Line parsing

/// A problem found while reading one line; thrown inside the line reader only.
private struct LineFailure: Error {
    let problem: SampleProblem
}

private struct LineReader {
    let root: String
    let folder: String
    var samples: [Sample] = []
    var problems: [SampleLineError] = []
    var firstLineOfID: [String: Int] = [:]

    init(root: String, folder: String) {
        self.root = root
        self.folder = folder
    }

    mutating func readAll(_ bytes: UnsafeRawBufferPointer, path: String) throws(SampleSetError) {
        var start = 0
        var lineNumber = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            lineNumber += 1
            guard lineNumber <= SampleLimits.lines else { throw .tooManyLines(path: path, limit: SampleLimits.lines) }
            var lineEnd = end
            if lineEnd > start && bytes[lineEnd - 1] == 0x0D { lineEnd -= 1 }  // CRLF files
            read(UnsafeRawBufferPointer(rebasing: bytes[start..<lineEnd]), line: lineNumber)
            start = end + 1
        }
    }

    mutating func read(_ line: UnsafeRawBufferPointer, line number: Int) {
        // Blank lines (a trailing newline, spacing between blocks) are not samples.
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
        var id: String?
        do throws(LineFailure) {
            guard line.count <= SampleLimits.lineBytes else {
                throw LineFailure(problem: .lineTooLong(bytes: line.count, limit: SampleLimits.lineBytes))
            }
            let value: JSONValue
            do { value = try JSONParser.parse(line, maxDepth: 32) } catch {
                throw LineFailure(problem: .invalidJSON(column: error.offset + 1, reason: error.reason))
            }
            guard let object = value.objectValue else { throw LineFailure(problem: .notAnObject(found: value.typeName)) }
            id = object["id"]?.stringValue
            let sample = try parse(object, line: number)
            if let first = firstLineOfID[sample.id] {
                throw LineFailure(problem: .duplicateID(sample.id, firstLine: first))
            }
            firstLineOfID[sample.id] = number
            samples.append(sample)
        } catch {
            problems.append(SampleLineError(line: number, id: id, problem: error.problem))
        }
    }

    func parse(_ object: JSONObject, line: Int) throws(LineFailure) -> Sample {
        guard let idValue = object["id"] else { throw LineFailure(problem: .missingField("id")) }
        let id = try string(idValue, "id")
        guard !id.isEmpty else { throw LineFailure(problem: .emptyID) }
        guard id.utf8.count <= SampleLimits.idBytes else {
            throw LineFailure(problem: .idTooLong(bytes: id.utf8.count, limit: SampleLimits.idBytes))
        }

        var images: [String] = []
        if let value = object["images"] {
            guard let list = value.arrayValue else { throw wrongType("images", "an array of paths", value) }
            guard list.count <= SampleLimits.imagesPerSample else {
                throw LineFailure(problem: .tooMany(field: "images", count: list.count, limit: SampleLimits.imagesPerSample))
            }
            for (i, item) in list.enumerated() {
                let field = "images[\(i)]"
                let p = try string(item, field)
                try checkImage(p, field: field)
                images.append(p)
            }
        }
        var video: VideoSource?
        if let value = object["video"] {
            video = try checkVideo(try string(value, "video"))
        }
        if !images.isEmpty && video != nil { throw LineFailure(problem: .imagesAndVideo) }

        var system: String?
        if let value = object["system"] { system = try string(value, "system") }
        var answer: String?
        if let value = object["answer"] {
            let a = try string(value, "answer")
            guard !a.isEmpty else { throw LineFailure(problem: .emptyAnswer) }
            answer = a
        }

        let messages: [SampleMessage]
        switch (object["prompt"], object["messages"]) {
        case (.some, .some): throw LineFailure(problem: .promptAndMessages)
        case (.none, .none): throw LineFailure(problem: .noPrompt)
        case (.some(let value), .none):
            let prompt = try string(value, "prompt")
            if prompt.isEmpty && images.isEmpty && video == nil { throw LineFailure(problem: .emptyPrompt) }
            var parts: [SamplePart] = images.indices.map { .image(index: $0) }
            if video != nil { parts.append(.video) }
            parts.append(.text(prompt))
            messages = (system.map { [SampleMessage(role: .system, parts: [.text($0)])] } ?? []) + [SampleMessage(role: .user, parts: parts)]
        case (.none, .some(let value)):
            if system != nil { throw LineFailure(problem: .systemWithMessages) }
            messages = try parseMessages(value, imageCount: images.count, hasVideo: video != nil)
        }
        return Sample(id: id, line: line, images: images, video: video, messages: messages, answer: answer)
    }

    func parseMessages(_ value: JSONValue, imageCount: Int, hasVideo: Bool) throws(LineFailure) -> [SampleMessage] {
        guard let list = value.arrayValue else { throw wrongType("messages", "an array of messages", value) }
        guard !list.isEmpty else { throw LineFailure(problem: .noMessages) }
        guard list.count <= SampleLimits.messagesPerSample else {
            throw LineFailure(problem: .tooMany(field: "messages", count: list.count, limit: SampleLimits.messagesPerSample))
        }
        var messages: [SampleMessage] = []
        var imageMarkers = 0, videoMarkers = 0
        for (m, item) in list.enumerated() {
            let field = "messages[\(m)]"
            guard let object = item.objectValue else { throw wrongType(field, "an object", item) }
            guard let roleValue = object["role"] else { throw LineFailure(problem: .missingField(field + ".role")) }
            let roleName = try string(roleValue, field + ".role")
            guard let role = SampleRole(rawValue: roleName) else {
                throw LineFailure(problem: .unknownRole(field: field + ".role", role: roleName))
            }
            if role == .system && m > 0 { throw LineFailure(problem: .systemNotFirst(field: field)) }
            guard let content = object["content"] else { throw LineFailure(problem: .missingField(field + ".content")) }
            var parts: [SamplePart] = []
            if let text = content.stringValue {
                parts = [.text(text)]
            } else if let items = content.arrayValue {
                guard items.count <= SampleLimits.partsPerMessage else {
                    throw LineFailure(problem: .tooMany(field: field + ".content", count: items.count, limit: SampleLimits.partsPerMessage))
                }
                for (p, part) in items.enumerated() {
                    let partField = "\(field).content[\(p)]"
                    guard let partObject = part.objectValue else { throw wrongType(partField, "an object", part) }
                    guard let typeValue = partObject["type"] else { throw LineFailure(problem: .missingField(partField + ".type")) }
                    let type = try string(typeValue, partField + ".type")
                    switch type {
                    case "text":
                        guard let textValue = partObject["text"] else { throw LineFailure(problem: .missingField(partField + ".text")) }
                        parts.append(.text(try string(textValue, partField + ".text")))
                    case "image", "video":
                        for key in ["url", "path", "image", "video"] where partObject[key] != nil {
                            throw LineFailure(problem: .partWithSource(field: partField, key: key))
                        }
                        guard role == .user else { throw LineFailure(problem: .mediaOutsideUserMessage(field: partField)) }
                        if type == "image" {
                            parts.append(.image(index: imageMarkers))
                            imageMarkers += 1
                        } else {
                            parts.append(.video)
                            videoMarkers += 1
                        }
                    default:
                        throw LineFailure(problem: .unknownPartType(field: partField + ".type", type: type))
                    }
                }
            } else {
                throw wrongType(field + ".content", "a string or an array of parts", content)
            }
            messages.append(SampleMessage(role: role, parts: parts))
        }
        if let last = messages.last, last.role != .user {
            throw LineFailure(problem: .lastMessageNotUser(role: last.role.rawValue))
        }
        guard imageMarkers == imageCount else {
            throw LineFailure(problem: .imageCountMismatch(markers: imageMarkers, images: imageCount))
        }
        guard videoMarkers == (hasVideo ? 1 : 0) else {
            throw LineFailure(problem: .videoMarkerMismatch(markers: videoMarkers, hasVideo: hasVideo))
        }
        return messages
    }

    // MARK: Paths

    /// Checks the spelling of a relative path, then that it exists and resolves inside the folder.
    func resolve(_ path: String, field: String) throws(LineFailure) -> (full: String, kind: SampleFiles.Kind) {
        func bad(_ problem: PathProblem) -> LineFailure { LineFailure(problem: .badPath(field: field, path: path, problem)) }
        guard !path.isEmpty else { throw bad(.empty) }
        guard !path.hasPrefix("/") else { throw bad(.absolute) }
        for component in path.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty || component == "." || component == ".." || component.contains("\\") || component.contains("\0") {
                throw bad(.badComponent(String(component)))
            }
        }
        let full = folder + "/" + path
        let kind = SampleFiles.kind(of: full)
        guard kind != .missing, let resolved = SampleFiles.resolvedPath(full) else { throw bad(.missing) }
        guard resolved.hasPrefix(root == "/" ? "/" : root + "/") else { throw bad(.outsideFolder) }
        return (full, kind)
    }

    func checkImage(_ path: String, field: String) throws(LineFailure) {
        let (full, kind) = try resolve(path, field: field)
        try checkImageFile(full, kind: kind, path: path, field: field)
    }

    func checkImageFile(_ full: String, kind: SampleFiles.Kind, path: String, field: String) throws(LineFailure) {
        func bad(_ problem: PathProblem) -> LineFailure { LineFailure(problem: .badPath(field: field, path: path, problem)) }
        guard case .regular(let size) = kind else { throw bad(.notAFile) }
        guard size <= SampleLimits.imageBytes else { throw bad(.tooLarge(bytes: size, limit: SampleLimits.imageBytes)) }
        guard let head = SampleFiles.prefix(of: full, count: 8), ImageSignature.isPNGOrJPEG(head) else { throw bad(.notPNGOrJPEG) }
    }

    func checkVideo(_ path: String) throws(LineFailure) -> VideoSource {
        func bad(_ problem: PathProblem) -> LineFailure { LineFailure(problem: .badPath(field: "video", path: path, problem)) }
        let (full, kind) = try resolve(path, field: "video")
        switch kind {
        case .regular(let size):
            guard size <= SampleLimits.videoBytes else { throw bad(.tooLarge(bytes: size, limit: SampleLimits.videoBytes)) }
            return .file(path)
        case .directory:
            let names = (SampleFiles.names(in: full) ?? []).filter { name in
                let lower = name.lowercased()
                return !name.hasPrefix(".") && (lower.hasSuffix(".png") || lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg"))
            }
            guard !names.isEmpty else { throw bad(.noFrames) }
            guard names.count <= SampleLimits.framesPerVideo else {
                throw LineFailure(problem: .tooMany(field: "video", count: names.count, limit: SampleLimits.framesPerVideo))
            }
            var frames: [String] = []
            for name in names {
                let relative = path + "/" + name
                let (frameFull, frameKind) = try resolve(relative, field: "video")
                try checkImageFile(frameFull, kind: frameKind, path: relative, field: "video")
                frames.append(relative)
            }
            return .frames(folder: path, frames: frames)
        case .other, .missing:
            throw bad(.notAFolderOrFile)
        }
    }

    // MARK: Typed access

    func string(_ value: JSONValue, _ field: String) throws(LineFailure) -> String {
        guard let s = value.stringValue else { throw wrongType(field, "a string", value) }
        return s
    }

    func wrongType(_ field: String, _ expected: String, _ value: JSONValue) -> LineFailure {
        LineFailure(problem: .wrongType(field: field, expected: expected, found: value.typeName))
    }
}

enum ImageSignature {
    static let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    static func isPNG(_ head: [UInt8]) -> Bool { head.count >= 8 && Array(head[0..<8]) == png }
    static func isJPEG(_ head: [UInt8]) -> Bool { head.count >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF }
    static func isPNGOrJPEG(_ head: [UInt8]) -> Bool { isPNG(head) || isJPEG(head) }
}
