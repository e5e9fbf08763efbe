/// Formats 1533524992 as "1,533,524,992".
public func formatThousands(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, ch) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return n < 0 ? "-" + out : out
}

/// Formats a byte count with binary units: "2.86 GiB".
public func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(n)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    if unit == 0 { return "\(n) B" }
    return String(format2: value) + " " + units[unit]
}

extension String {
    /// `value` with exactly `decimals` decimals, rounded half away from zero (no Foundation).
    public init(fixed value: Double, decimals: Int) {
        var scale = 1.0
        for _ in 0..<Swift.max(0, Swift.min(decimals, 15)) { scale *= 10 }
        // Beyond what an Int holds (or not a number), the shortest exact form instead of a trap.
        guard value.isFinite, abs(value) * scale < 9e18 else {
            self = "\(value)"
            return
        }
        let scaled = Int((abs(value) * scale).rounded())
        let whole = scaled / Int(scale), fraction = scaled % Int(scale)
        self = (value < 0 && scaled != 0 ? "-" : "") + "\(whole)" + (decimals > 0 ? "." + String(fraction).leftPadded(decimals) : "")
    }

    /// Two decimals: "2.86".
    public init(format2 value: Double) { self.init(fixed: value, decimals: 2) }

    /// Left-pads with zeros to `width` characters.
    public func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
