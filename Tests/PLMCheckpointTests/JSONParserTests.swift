import Testing
import PLMTestSupport
import PLMCore
@testable import PLMCheckpoint

@Suite struct JSONParserTests {
    @Test func parsesNestedValuesAndKeepsKeyOrder() throws {
        let v = try JSONParser.parse(#" {"b": [1, -2.5e3, true, null], "a": {"x": "y"}} "#)
        let o = try #require(v.objectValue)
        #expect(o.keys == ["b", "a"])
        #expect(o["b"]?.arrayValue?.count == 4)
        #expect(o["b"]?.arrayValue?[1].doubleValue == -2500)
        #expect(o["a"]?.objectValue?["x"]?.stringValue == "y")
    }

    @Test func numbersKeepTheirLiteral() throws {
        let v = try JSONParser.parse("[18446744073709551615, 1e-05, 32.0]")
        let items = try #require(v.arrayValue)
        #expect(items[0] == .number("18446744073709551615"))
        #expect(items[0].int64Value == nil)  // does not fit: no silent rounding
        #expect(items[1].doubleValue == 1e-05)
        #expect(items[2].intValue == 32)
    }

    @Test func decodesEscapesAndSurrogatePairs() throws {
        let v = try JSONParser.parse(#""a\"b\\c\/\n\u00e9\ud83d\ude00""#)
        #expect(v.stringValue == "a\"b\\c/\né😀")
    }

    @Test func rejectsMalformedText() throws {
        let bad = ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"\\x\"", "\"\\ud800\"", "tru", "{} x", "\"a\u{01}\"", "{\"a\":1,\"a\":2}"]
        for text in bad {
            #expect(throws: JSONParseError.self, "\(text)") { try JSONParser.parse(text) }
        }
    }

    @Test func duplicateKeyErrorSaysWhich() throws {
        do {
            _ = try JSONParser.parse(#"{"k":1,"k":2}"#)
            Issue.record("accepted a duplicate key")
        } catch {
            #expect(error.reason == "duplicate key \"k\"")
            #expect(error.offset == 7)
        }
    }

    @Test func rejectsExcessiveNesting() throws {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
    }

    @Test func serialisationRoundTrips() throws {
        let text = #"{"a":[1,2.5,"x\n\"y\u0001"],"b":{"c":null,"d":false}}"#
        let v = try JSONParser.parse(text)
        #expect(v.serialized() == text)
        #expect(try JSONParser.parse(v.serialized(pretty: true)) == v)
    }
}
