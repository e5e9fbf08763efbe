import PLMCore
import PLMImage
import PLMTokenizer

/// An image as a caller gives it: a PNG or JPEG file, or pixels already decoded.
public enum ImageInput: Sendable, Equatable {
    case file(String)
    case decoded(DecodedImage)
}

/// A video as a caller gives it: a video file (decoded by ffmpeg), a folder of frames, or frames
/// already decoded.
public enum VideoInput: Sendable, Equatable {
    case file(String)
    case frames([DecodedImage])
}

/// One message of a conversation: a role and its parts in order. The chat template decides
/// where the media go (PLM's puts a message's images first, then its videos, then its text).
public struct Message: Sendable, Equatable {
    public enum Part: Sendable, Equatable {
        case text(String)
        case image(ImageInput)
        case video(VideoInput)
    }

    public var role: String
    public var parts: [Part]

    public init(role: String, parts: [Part]) {
        self.role = role
        self.parts = parts
    }

    public static func system(_ text: String) -> Message { Message(role: "system", parts: [.text(text)]) }
    public static func assistant(_ text: String) -> Message { Message(role: "assistant", parts: [.text(text)]) }
    /// A user message: its images, then its videos, then the text (PLM's own order).
    public static func user(_ text: String, images: [ImageInput] = [], videos: [VideoInput] = []) -> Message {
        Message(role: "user", parts: images.map { .image($0) } + videos.map { .video($0) } + [.text(text)])
    }

    /// What the chat template sees: text parts and typed placeholders.
    var templateMessage: ChatMessage {
        ChatMessage(role: role, content: .parts(parts.map { part in
            switch part {
            case .text(let t): return .text(t)
            case .image: return .image
            case .video: return .video
            }
        }))
    }

    var images: [ImageInput] { parts.compactMap { if case .image(let i) = $0 { return i } else { return nil } } }
    var videos: [VideoInput] { parts.compactMap { if case .video(let v) = $0 { return v } else { return nil } } }
}
