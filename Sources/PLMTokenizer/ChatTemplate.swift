import PLMCore

/// One message of a conversation, as transformers' `apply_chat_template` receives it.
public struct ChatMessage: Sendable, Equatable {
    /// One item of a multimodal `content` list: `{"type": "text", "text": …}`, `{"type": "image"}`
    /// or `{"type": "video"}`.
    public enum Part: Sendable, Equatable {
        case text(String)
        case image
        case video
    }

    /// A plain string, or a list of parts in the order the user gave them.
    public enum Content: Sendable, Equatable {
        case text(String)
        case parts([Part])
    }

    public var role: String
    public var content: Content

    public init(role: String, content: Content) {
        self.role = role
        self.content = content
    }

    public init(role: String, text: String) {
        self.init(role: role, content: .text(text))
    }
}

/// Why a chat template could not be parsed or rendered: where (1-based line and column in the
/// template source; 0 when the problem is not at a place in the template) and what.
public struct TemplateError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// Not valid Jinja: a bad token, an unclosed block, a stray end tag.
        case syntax
        /// Valid Jinja that this interpreter does not implement (a `{% filter %}` block, …).
        case unsupported
        case unknownFilter
        case unknownTest
        /// An undefined value was used (its attribute read, called, added to).
        case undefined
        /// Python would raise a TypeError (or ValueError, ZeroDivisionError): `'a' + 1`, …
        case type
        /// The template called `raise_exception(message)`.
        case raised
        /// A limit of `ChatTemplate.Limits` was reached.
        case limit
        /// A bad argument to `render` (e.g. `extra` redefining `messages`).
        case invalidArgument
    }

    public var kind: Kind
    public var line: Int
    public var column: Int
    public var message: String

    public init(_ kind: Kind, line: Int, column: Int, _ message: String) {
        self.kind = kind
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        let place = line > 0 ? "chat template line \(line), column \(column)" : "chat template"
        return kind == .raised ? "\(place): the template raised an exception: \(message)" : "\(place): \(message)"
    }
}

/// A chat template (`chat_template.jinja`, or the `chat_template` string of
/// tokenizer_config.json / chat_template.json), parsed once and rendered as transformers'
/// `apply_chat_template(…, tokenize=False)` renders it.
///
/// It is a small Jinja interpreter with the settings transformers compiles templates with
/// (`trim_blocks`, `lstrip_blocks`, a sandbox with `raise_exception`, `strftime_now`,
/// `namespace`, its own `tojson`) and Python's semantics for the values. Supported:
/// - tags: `{{ }}`, `{% %}`, `{# #}` with `-`/`+` white-space control, `{% raw %}`; `if`/`elif`/
///   `else`, `for` (tuple targets, `if` filter, `else`, `loop.index/index0/revindex/revindex0/
///   first/last/length/depth/previtem/nextitem/cycle`), `break`/`continue`, `set` (name, tuple,
///   `ns.attr`, block), `macro` (positional, keyword and default arguments), `generation`;
/// - expressions: literals (strings with Python escapes, ints, floats, lists, tuples, dicts),
///   `and`/`or`/`not`, comparisons (chained), `in`/`not in`, `+ - * / // % **`, `~`,
///   `x if c else y`, attribute, item, slice (`[a:b:c]`), calls, filters, `is` tests;
/// - filters: abs, attr, capitalize, count, default/d, escape/e, first, float, indent, int, items,
///   join, last, length, list, lower, map, max, min, reject, rejectattr, replace, reverse, round,
///   safe, select, selectattr, sort, string, sum, title, tojson, trim, unique, upper;
/// - tests: boolean, callable, defined, divisibleby, eq/equalto/==, even, false, float, ge/>=,
///   gt/>/greaterthan, in, integer, iterable, le/<=, lt/</lessthan, lower, mapping, ne/!=, none,
///   number, odd, sameas, sequence, string, true, undefined, upper;
/// - methods: str strip/lstrip/rstrip/split/rsplit/splitlines/startswith/endswith/upper/lower/
///   title/capitalize/replace/find/rfind/count/join/is…/removeprefix/removesuffix; dict items/
///   keys/values/get; list index/count.
/// Anything else is a `TemplateError` with its line and column, at parse time where possible.
public struct ChatTemplate: Sendable {
    /// Bounds that keep a hostile template from hanging or exhausting memory.
    public struct Limits: Sendable, Equatable {
        /// The template source, in UTF-8 bytes (real templates are under 20 KB).
        public var maxSourceBytes = 1 << 20
        /// The rendered prompt, in UTF-8 bytes (PLM's context of 11520 tokens is ~50 KB).
        public var maxOutputBytes = 4 << 20
        /// Any one string value.
        public var maxStringBytes = 4 << 20
        /// Any one list built by the template (`range`, `*`, `+`, `split`).
        public var maxCollectionCount = 1 << 20
        /// Loop iterations over the whole render.
        public var maxLoopIterations = 1 << 20
        /// Evaluation steps (statements and expression nodes) over the whole render.
        public var maxSteps = 5_000_000
        /// Parser nesting (blocks inside blocks, parentheses, operators), which also bounds the
        /// interpreter's recursion.
        public var maxNesting = 100
        /// Macro calls inside macro calls.
        public var maxCallDepth = 16

        public init() {}
    }

    public let source: String
    public let limits: Limits
    let body: [Statement]

    public init(source: String) throws(TemplateError) {
        try self.init(source: source, limits: Limits())
    }

    public init(source: String, limits: Limits) throws(TemplateError) {
        guard source.utf8.count <= limits.maxSourceBytes else {
            throw TemplateError(.limit, line: 0, column: 0, "the template has \(source.utf8.count) bytes, more than \(limits.maxSourceBytes)")
        }
        self.source = source
        self.limits = limits
        var lexer = Lexer(source: source)
        var parser = Parser(tokens: try lexer.tokenize(), maxDepth: limits.maxNesting)
        body = try parser.parseTemplate()
    }

    /// The names the template's context holds before `extra`: `messages`, `tools` and `documents`
    /// (none), `add_generation_prompt`, and `bos_token`/`eos_token` when given.
    public static let reservedNames: Set<String> = ["messages", "add_generation_prompt"]

    /// Renders the conversation. `extra` adds template variables (transformers passes the
    /// tokenizer's other special tokens, e.g. `pad_token`, and any keyword argument, e.g.
    /// Llama 3.x's `date_string`); it may replace `tools`, `documents` and the special tokens.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String?, eosToken: String?,
                       extra: [String: JSONValue] = [:]) throws(TemplateError) -> String {
        var variables: [String: Value] = [:]
        for name in Builtins.globalNames { variables[name] = .function(.global(name)) }
        variables["messages"] = .list(messages.map(ChatTemplate.value(of:)))
        variables["tools"] = Value.none
        variables["documents"] = Value.none
        variables["add_generation_prompt"] = .bool(addGenerationPrompt)
        if let bosToken { variables["bos_token"] = .string(bosToken) }
        if let eosToken { variables["eos_token"] = .string(eosToken) }
        for (name, json) in extra {
            guard !ChatTemplate.reservedNames.contains(name) else {
                throw TemplateError(.invalidArgument, line: 0, column: 0, "extra variable '\(name)' would replace the one render sets itself")
            }
            variables[name] = ChatTemplate.value(of: json)
        }
        var renderer = Renderer(limits: limits, variables: variables)
        _ = try renderer.execute(body)
        return renderer.output
    }

    static func value(of message: ChatMessage) -> Value {
        var d = PyDict()
        d.set("role", .string(message.role))
        switch message.content {
        case .text(let s): d.set("content", .string(s))
        case .parts(let parts):
            d.set("content", .list(parts.map { part in
                var item = PyDict()
                switch part {
                case .text(let s):
                    item.set("type", .string("text"))
                    item.set("text", .string(s))
                case .image: item.set("type", .string("image"))
                case .video: item.set("type", .string("video"))
                }
                return .dict(item)
            }))
        }
        return .dict(d)
    }

    static func value(of json: JSONValue) -> Value {
        switch json {
        case .null: return .none
        case .bool(let b): return .bool(b)
        case .number(let literal):
            if let i = Int(literal) { return .int(i) }
            return .float(Double(literal) ?? .nan)
        case .string(let s): return .string(s)
        case .array(let items): return .list(items.map(value(of:)))
        case .object(let o):
            var d = PyDict()
            for (k, v) in o.entries { d.set(k, value(of: v)) }
            return .dict(d)
        }
    }
}
