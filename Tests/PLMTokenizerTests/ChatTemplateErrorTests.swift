import PLMCore
import Testing
@testable import PLMTokenizer

/// Malformed templates and hostile ones: named errors with a line and column, and limits that
/// stop a template before it hangs or exhausts memory.
@Suite struct ChatTemplateErrorTests {
    func parseError(_ source: String, limits: ChatTemplate.Limits = ChatTemplate.Limits()) -> TemplateError? {
        do {
            _ = try ChatTemplate(source: source, limits: limits)
            return nil
        } catch {
            return error
        }
    }

    func renderError(_ source: String, limits: ChatTemplate.Limits = ChatTemplate.Limits(), extra: [String: JSONValue] = [:]) throws -> TemplateError? {
        let template = try ChatTemplate(source: source, limits: limits)
        do {
            _ = try template.render(messages: [ChatMessage(role: "user", text: "hi")], addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>", extra: extra)
            return nil
        } catch {
            return error
        }
    }

    @Test func unclosedBlockPointsAtItsOpeningTag() throws {
        let e = try #require(parseError("line one\n  {% for m in messages %}\n{{ m }}"))
        #expect(e.kind == .syntax)
        #expect((e.line, e.column) == (2, 3))
        #expect(e.message.contains("unclosed 'for'") && e.message.contains("'endfor'"))
        let e2 = try #require(parseError("{% if a %}{% else %}"))
        #expect(e2.kind == .syntax && e2.message.contains("'if'") && e2.message.contains("'endif'"))
    }

    @Test func strayOrMismatchedEndTags() throws {
        let stray = try #require(parseError("ok\n{% endfor %}"))
        #expect((stray.kind, stray.line, stray.column) == (.syntax, 2, 1))
        let mismatched = try #require(parseError("{% for x in y %}\n{% endif %}"))
        #expect(mismatched.kind == .syntax && mismatched.line == 2 && mismatched.message.contains("'for'"))
        let breakOutside = try #require(parseError("{% break %}"))
        #expect(breakOutside.kind == .syntax && breakOutside.message.contains("outside of a for loop"))
    }

    @Test func unknownFiltersAndTestsFailAtParseTime() throws {
        let f = try #require(parseError("{{ 'a' }}\n{{ messages | shuffle }}"))
        #expect((f.kind, f.line, f.column) == (.unknownFilter, 2, 15))
        #expect(f.message == "unknown filter 'shuffle'")
        let t = try #require(parseError("{% if x is prime %}{% endif %}"))
        #expect((t.kind, t.line, t.column) == (.unknownTest, 1, 12))
        // A test named inside selectattr is only known at render time.
        let s = try #require(try renderError("{{ [1]|select('prime')|list }}"))
        #expect(s.kind == .unknownTest)
    }

    @Test func badSyntaxHasLineAndColumn() throws {
        let cases: [(String, Int, Int)] = [
            ("{{ 1 + }}", 1, 8),              // expression ends early
            ("a\n\n  {{ 'unterminated }}", 3, 6),
            ("{{ (1, 2 }}", 1, 10),           // '}' closes nothing open: the ( is still open
            ("{% set %}", 1, 8),
            ("x {# comment", 1, 3),
            ("{{ a.. }}", 1, 6),
            ("{{ 'x' }}{% foo %}", 1, 10),
            ("{{ x[1, 2] }}", 1, 7),
        ]
        for (source, line, column) in cases {
            let e = try #require(parseError(source), "\(source)")
            #expect([.syntax, .unsupported].contains(e.kind), "\(source): \(e)")
            #expect((e.line, e.column) == (line, column), "\(source): \(e)")
        }
    }

    @Test func unsupportedConstructsAreNamed() throws {
        for source in ["{% filter upper %}x{% endfilter %}", "{% include 'x' %}", "{% for x in y recursive %}{% endfor %}", "{{ f(*args) }}", "{% set x | upper %}a{% endset %}"] {
            let e = try #require(parseError(source), "\(source)")
            #expect(e.kind == .unsupported, "\(source): \(e)")
        }
        let format = try #require(try renderError("{{ '%s' % 1 }}"))
        #expect(format.kind == .unsupported)
    }

    @Test func renderErrorsNameTheCause() throws {
        let undefined = try #require(try renderError("{{ nope.attr }}"))
        #expect((undefined.kind, undefined.message) == (.undefined, "'nope' is undefined"))
        let type = try #require(try renderError("\n{{ 'a' + 1 }}"))
        #expect((type.kind, type.line, type.column) == (.type, 2, 8))
        let raised = try #require(try renderError("{{ raise_exception('Only user and assistant roles are supported!') }}"))
        #expect((raised.kind, raised.message) == (.raised, "Only user and assistant roles are supported!"))
        #expect(raised.description.contains("raised an exception"))
        let reserved = try #require(try renderError("{{ x }}", extra: ["messages": .array([])]))
        #expect(reserved.kind == .invalidArgument)
    }

    @Test func loopIterationLimit() throws {
        var limits = ChatTemplate.Limits()
        limits.maxLoopIterations = 1000
        let e = try #require(try renderError("{% for i in range(600) %}{% for j in [1, 2] %}{% endfor %}{% endfor %}", limits: limits))
        #expect(e.kind == .limit && e.message.contains("1000 loop iterations"))
        #expect(try renderError("{% for i in range(300) %}{% for j in [1, 2] %}{% endfor %}{% endfor %}", limits: limits) == nil)
    }

    @Test func stepLimitStopsWorkWithoutOutput() throws {
        var limits = ChatTemplate.Limits()
        limits.maxSteps = 10_000
        let e = try #require(try renderError("{% for i in range(100000) %}{% set x = i * 2 %}{% endfor %}", limits: limits))
        #expect(e.kind == .limit)
    }

    @Test func outputAndValueSizeLimits() throws {
        var limits = ChatTemplate.Limits()
        limits.maxOutputBytes = 1000
        let output = try #require(try renderError("{% for i in range(200) %}0123456789{% endfor %}", limits: limits))
        #expect(output.kind == .limit && output.message.contains("output"))
        // Doubling a string in a namespace grows exponentially; the string limit stops it early.
        let doubling = try #require(try renderError("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"))
        #expect(doubling.kind == .limit)
        let repeated = try #require(try renderError("{{ 'x' * 10000000000 }}"))
        #expect(repeated.kind == .limit)
        let list = try #require(try renderError("{{ range(100000000)|length }}"))
        #expect(list.kind == .limit)
        let replaced = try #require(try renderError("{{ ('a' * 4000)|replace('a', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' * 50) }}"))
        #expect(replaced.kind == .limit)
        let overflow = try #require(try renderError("{{ 2 ** 64 }}"))
        #expect(overflow.kind == .limit)
    }

    @Test func nestingAndRecursionLimits() throws {
        var limits = ChatTemplate.Limits()
        limits.maxNesting = 50
        let deep = try #require(parseError("{{ " + String(repeating: "(", count: 100) + "1" + String(repeating: ")", count: 100) + " }}", limits: limits))
        #expect(deep.kind == .limit)
        let blocks = try #require(parseError(String(repeating: "{% if true %}", count: 60) + String(repeating: "{% endif %}", count: 60), limits: limits))
        #expect(blocks.kind == .limit)
        let recursion = try #require(try renderError("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"))
        #expect(recursion.kind == .limit && recursion.message.contains("macro"))
        let source = try #require(parseError(String(repeating: "x", count: 2000), limits: { var l = ChatTemplate.Limits(); l.maxSourceBytes = 1000; return l }()))
        #expect(source.kind == .limit)
    }

    @Test func selfContainingNamespaceDoesNotRecurseForever() throws {
        let e = try #require(try renderError("{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns|tojson }}"))
        #expect(e.kind == .type)
    }

    @Test func messagesMapToTransformersDicts() throws {
        let t = try ChatTemplate(source: "{% for m in messages %}{{ m.role }}:{{ m.content if m.content is string else m.content|tojson }};{% endfor %}{{ tools }}|{{ bos_token }}{{ eos_token is defined }}")
        let out = try t.render(messages: [ChatMessage(role: "system", text: "s"), ChatMessage(role: "user", content: .parts([.video, .text("t"), .image]))],
                               addGenerationPrompt: false, bosToken: "<s>", eosToken: nil)
        #expect(out == "system:s;user:[{\"type\": \"video\"}, {\"type\": \"text\", \"text\": \"t\"}, {\"type\": \"image\"}];None|<s>False")
    }

    @Test func strftimeNowFormatsTheLocalDate() throws {
        let t = try ChatTemplate(source: "{{ strftime_now('%Y') }}")
        let year = try t.render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil)
        #expect(year.count == 4 && Int(year).map { $0 >= 2024 } == true)
    }
}
