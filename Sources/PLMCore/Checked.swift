/// Overflow-checked arithmetic for sizes, offsets and shape products that come from input data.
///
/// Every reader uses these instead of `+`, `*` or `reduce(1, *)` on values it read from a file:
/// Swift traps on overflow, so unchecked arithmetic on a hostile header is a crash. Each returns
/// nil when the result does not fit (or, for sizes, when an operand is negative); the caller wraps
/// that in its own typed error, which names the file and the field.
public enum Checked {
    /// a + b, or nil on overflow.
    @inlinable
    public static func add(_ a: Int, _ b: Int) -> Int? {
        let (r, o) = a.addingReportingOverflow(b)
        return o ? nil : r
    }

    /// a · b, or nil on overflow.
    @inlinable
    public static func multiply(_ a: Int, _ b: Int) -> Int? {
        let (r, o) = a.multipliedReportingOverflow(by: b)
        return o ? nil : r
    }

    /// The product of non-negative sizes (a shape's element count), or nil when one is negative
    /// or the product overflows. The empty product is 1.
    @inlinable
    public static func product<S: Sequence>(of values: S) -> Int? where S.Element == Int {
        var p = 1
        for v in values {
            guard v >= 0, let next = multiply(p, v) else { return nil }
            p = next
        }
        return p
    }

    /// The product, also nil when it exceeds `limit`.
    @inlinable
    public static func product<S: Sequence>(of values: S, atMost limit: Int) -> Int? where S.Element == Int {
        guard let p = product(of: values), p <= limit else { return nil }
        return p
    }

    /// `offset..<offset + length` when both are non-negative and the range ends at or before
    /// `end`; nil otherwise (including when the sum overflows).
    @inlinable
    public static func range(offset: Int, length: Int, within end: Int) -> Range<Int>? {
        guard offset >= 0, length >= 0, let last = add(offset, length), last <= end else { return nil }
        return offset..<last
    }

    /// A file's unsigned 64-bit field as an Int, or nil when it does not fit.
    @inlinable
    public static func int(_ v: UInt64) -> Int? { Int(exactly: v) }
}
