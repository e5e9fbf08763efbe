import Testing
import PLMTestSupport
import PLMCore
@testable import PLMCheckpoint

/// One crafted file per validation rule; each must be rejected with the named problem.
@Suite struct SafetensorsValidationTests {
    let eightBytes = [UInt8](repeating: 0, count: 8)

    @Test func validFileIsAccepted() throws {
        let bytes = safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}"#, data: eightBytes)
        #expect(try safetensorsProblem(bytes) == nil)
    }

    @Test func fileShorterThanLengthPrefix() throws {
        #expect(try safetensorsProblem([1, 2, 3]) == .fileTooSmall(size: 3))
    }

    @Test func headerLongerThanLimit() throws {
        let bytes = safetensorsBytes(header: "{}", data: [], declaredLength: 100_000_001)
        #expect(try safetensorsProblem(bytes) == .headerTooLarge(length: 100_000_001))
    }

    @Test func headerRunningPastEndOfFile() throws {
        let bytes = safetensorsBytes(header: "{}", data: [], declaredLength: 50)
        #expect(try safetensorsProblem(bytes) == .headerBeyondFile(length: 50, fileSize: 10))
    }

    @Test func headerWithInvalidUTF8() throws {
        var bytes = safetensorsBytes(header: #"{"a":1}"#, data: [])
        bytes[10] = 0xFF
        #expect(try safetensorsProblem(bytes) == .headerNotUTF8)
    }

    @Test func headerThatIsNotJSON() throws {
        guard case .headerNotJSON = try safetensorsProblem(safetensorsBytes(header: "{\"a\":", data: [])) else {
            Issue.record("expected headerNotJSON"); return
        }
    }

    @Test func headerThatIsNotAnObject() throws {
        #expect(try safetensorsProblem(safetensorsBytes(header: "[1,2]", data: [])) == .headerNotObject)
    }

    @Test func duplicateTensorNamesAreRejected() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        guard case .headerNotJSON(let e) = try safetensorsProblem(safetensorsBytes(header: header, data: eightBytes)) else {
            Issue.record("expected a duplicate-key error"); return
        }
        #expect(e.reason.contains("duplicate key"))
    }

    @Test func metadataMustBeAStringMap() throws {
        let header = #"{"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: [0, 0, 0, 0])) == .metadataNotStringMap(detail: "key 'format' holds a number"))
        let notObject = #"{"__metadata__":"x"}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: notObject, data: [])) == .metadataNotStringMap(detail: "found a string"))
    }

    @Test func unknownDTypeNamesTheTensor() throws {
        let header = #"{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: 16))) == .unknownDType(tensor: "w", dtype: "F128"))
    }

    @Test func everySafetensorsDTypeIsRecognised() throws {
        for dtype in TensorDType.allCases {
            let elements = 8  // 8 elements fill whole bytes for 4- and 6-bit types
            let bytes = elements * dtype.bitWidth / 8
            let header = #"{"t":{"dtype":"\#(dtype.rawValue)","shape":[\#(elements)],"data_offsets":[0,\#(bytes)]}}"#
            #expect(try safetensorsProblem(safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: bytes))) == nil, "\(dtype)")
        }
    }

    @Test func malformedEntries() throws {
        let cases: [(String, String)] = [
            (#"{"w":[1]}"#, "entry is a array, not an object"),
            (#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, "missing or non-string 'dtype'"),
            (#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#, "missing or non-array 'shape'"),
            (#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, "shape entries must be non-negative integers"),
            (#"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, "shape entries must be non-negative integers"),
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#, "'data_offsets' must be an array of two integers"),
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,"4"]}}"#, "'data_offsets' must be non-negative integers"),
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}"#, "unknown field 'extra'"),
        ]
        for (header, detail) in cases {
            #expect(try safetensorsProblem(safetensorsBytes(header: header, data: [0, 0, 0, 0])) == .tensorEntryInvalid(tensor: "w", detail: detail), "\(header)")
        }
    }

    @Test func shapeTimesDTypeMustEqualTheByteRange() throws {
        let header = #"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: eightBytes)) == .sizeMismatch(tensor: "w", expectedBytes: 12, actualBytes: 8))
    }

    @Test func shapeProductOverflowIsCaught() throws {
        let header = #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: eightBytes)) == .sizeOverflow(tensor: "w"))
        let bitOverflow = #"{"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: bitOverflow, data: eightBytes)) == .sizeOverflow(tensor: "w"))
    }

    @Test func subByteTypesMustFillWholeBytes() throws {
        let header = #"{"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: [0, 0])) == .subByteSizeNotWhole(tensor: "w", bits: 4))
    }

    @Test func reversedOffsets() throws {
        let header = #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: eightBytes)) == .offsetsReversed(tensor: "w", begin: 8, end: 0))
    }

    @Test func holeBetweenTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: 12))) == .hole(tensor: "b", expectedBegin: 4, begin: 8))
    }

    @Test func holeBeforeFirstTensor() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: eightBytes)) == .hole(tensor: "a", expectedBegin: 0, begin: 4))
    }

    @Test func overlappingTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: eightBytes)) == .overlap(tensor: "b", other: "a"))
    }

    @Test func tensorsMustCoverTheWholeDataSection() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: eightBytes)) == .dataSizeMismatch(dataEnd: 4, bufferBytes: 8))
        // A truncated file: the offsets run past the end.
        let truncated = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: truncated, data: eightBytes)) == .dataSizeMismatch(dataEnd: 16, bufferBytes: 8))
    }

    @Test func headerPaddedWithSpacesIsAccepted() throws {
        // safetensors writers pad the header to 8-byte alignment with spaces.
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}   "#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: [0, 0, 0, 0])) == nil)
    }

    @Test func emptyFileWithEmptyHeader() throws {
        #expect(try safetensorsProblem(safetensorsBytes(header: "{}", data: [])) == nil)
    }

    @Test func errorsNameTheFile() throws {
        let folder = try TemporaryFolder()
        let path = folder.write("broken.safetensors", [1, 2])
        #expect(throws: CheckpointError.self) { try SafetensorsFile(path: path) }
        do { _ = try SafetensorsFile(path: path) } catch {
            #expect(error.description.hasPrefix(path))
            #expect(error.description.contains("shorter than the 8-byte header length"))
        }
        do { _ = try SafetensorsFile(path: folder.path + "/absent.safetensors") } catch {
            #expect(error.description.contains("absent.safetensors"))
        }
    }
}

@Suite struct TensorConversionTests {
    @Test func bf16AndF16WidenExactly() throws {
        let values: [Float] = [0, -0.0, 1, -2.5, 65504, 6.103515625e-05, 5.960464477539063e-08, .infinity, -.infinity, 0.333984375]
        let f16: [UInt16] = [0x0000, 0x8000, 0x3C00, 0xC100, 0x7BFF, 0x0400, 0x0001, 0x7C00, 0xFC00, 0x3558]
        let bf16 = values.map { UInt16($0.bitPattern >> 16) }
        let n = values.count
        let header = #"{"h":{"dtype":"F16","shape":[\#(n)],"data_offsets":[0,\#(2 * n)]},"b":{"dtype":"BF16","shape":[\#(n)],"data_offsets":[\#(2 * n),\#(4 * n)]},"f":{"dtype":"F32","shape":[\#(n)],"data_offsets":[\#(4 * n),\#(8 * n)]}}"#
        let folder = try TemporaryFolder()
        let path = folder.write("t.safetensors", safetensorsBytes(header: header, data: u16Bytes(f16) + u16Bytes(bf16) + floatBytes(values)))
        let file = try SafetensorsFile(path: path)
        #expect(try file.view("f").floats() == values)
        #expect(try file.view("h").floats().map(\.bitPattern) == values.map(\.bitPattern))
        // bf16 truncation of these values is exact except 0.333984375, which is representable too.
        #expect(try file.view("b").floats() == values.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) })
    }

    @Test func f16NaNStaysNaN() throws {
        let header = #"{"h":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}"#
        let folder = try TemporaryFolder()
        let path = folder.write("t.safetensors", safetensorsBytes(header: header, data: u16Bytes([0x7E00])))
        #expect(try SafetensorsFile(path: path).view("h").floats()[0].isNaN)
    }

    @Test func integerTypesAreNotConvertedToFloat() throws {
        let header = #"{"i":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#
        let folder = try TemporaryFolder()
        let path = folder.write("t.safetensors", safetensorsBytes(header: header, data: [1, 0, 0, 0, 255, 255, 255, 255]))
        let view = try SafetensorsFile(path: path).view("i")
        #expect(try view.integers() == [1, -1])
        #expect(throws: SafetensorsError.self) { try view.floats() }
    }
}
