import PLMCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// One self-contained HTML page from an `EvalReport`: the summary table, the KL distribution and
// the per-layer error curves as inline SVG, and per-sample rows with image thumbnails embedded
// as data URIs. No scripts, no external resources: the page is one file a person can mail.

public enum HTMLReport {
    /// Largest image embedded as it is; larger ones get a placeholder (the runner can pass a
    /// downscaled PNG through `thumbnail` instead).
    public static let maxEmbeddedImageBytes = 1 << 20

    /// Renders the page. `thumbnail` returns the PNG/JPEG bytes shown for an image path; by
    /// default the file itself when it is at most `maxEmbeddedImageBytes`.
    public static func render(_ report: EvalReport, thumbnail: (String) -> [UInt8]? = HTMLReport.fileBytes) -> String {
        var page = Page()
        page.head(title: "plmq eval: " + report.models.map(\.model.name).joined(separator: " vs "))
        page.line("<h1>plmq eval <span class=sub>\(escape(report.models.map(\.model.name).joined(separator: " · ")))</span></h1>")
        page.line("<p class=meta>reference <b>\(escape(report.reference.name))</b> <code>\(escape(String(report.reference.sha256.prefix(16))))</code>"
                  + " · mode \(escape(report.mode))" + datasetLine(report.dataset) + " · plmq \(escape(report.plmqVersion))</p>")
        let verdict = report.passed ? "<span class=ok>all thresholds kept</span>" : "<span class=bad>a threshold is broken</span>"
        if report.models.contains(where: { !$0.thresholds.isEmpty }) { page.line("<p>\(verdict)</p>") }

        page.line("<h2>Summary</h2>")
        page.line(summaryTable(report))

        if report.models.contains(where: { $0.klHistogram != nil }) {
            page.line("<h2>KL divergence per token</h2>")
            page.line("<p class=note>Share of scored tokens per KL bin (log scale, four bins a decade); further right is worse.</p>")
            page.line(histogramChart(report.models))
        }
        if report.models.contains(where: { !$0.layers.isEmpty }) {
            page.line("<h2>Error per layer</h2>")
            page.line("<p class=note>Relative error ‖q − r‖/‖r‖ of the hidden state after each block (log scale), mean over samples: where the error enters.</p>")
            page.line(layerChart(report.models))
        }
        page.line("<h2>Samples</h2>")
        page.line(sampleTable(report.models, thumbnail: thumbnail))
        page.line("<p class=note>KLD, same top p, Δp and PPL follow llama-perplexity --kl-divergence; ± is one standard error.</p>")
        page.line("</body></html>")
        return page.text
    }

    /// The default thumbnail: the file itself. An unreadable or oversized image is not an error
    /// of the report (the samples reader already vetted it); the page shows its name instead.
    public static func fileBytes(_ path: String) -> [UInt8]? {
        guard let file = try? MappedFile(path: path), file.size <= maxEmbeddedImageBytes else { return nil }
        return Array(file.bytes)
    }

    static let colors = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b"]

    static func datasetLine(_ d: JSONObject) -> String {
        var parts: [String] = []
        if let f = d["folder"]?.stringValue ?? d["text"]?.stringValue { parts.append(escape(f)) }
        if let h = d["hash"]?.stringValue { parts.append("<code>" + escape(String(h.prefix(16))) + "</code>") }
        if let n = d["samples"]?.intValue { parts.append("\(n) samples") }
        return parts.isEmpty ? "" : " · dataset " + parts.joined(separator: " ")
    }

    // MARK: Tables

    static func summaryTable(_ report: EvalReport) -> String {
        let f = ReportFormat.self
        var rows: [(String, [String], Bool)] = []  // name, cells (HTML), lower is better?
        func row(_ name: String, _ cell: (ModelResult) -> String?) {
            let cells = report.models.map { cell($0).map(escape) ?? "–" }
            if cells.contains(where: { $0 != "–" }) { rows.append((name, cells, true)) }
        }
        row("tokens scored") { $0.tokens.map { formatThousands($0.count) } }
        row("Mean KLD") { $0.tokens.map { f.estimate($0.meanKLD, 6) } }
        row("Median KLD") { $0.tokens.map { f.fixed($0.kld.median, 6) } }
        row("99 % KLD") { $0.tokens?.kld.percentile(0.99).map { f.fixed($0, 6) } }
        row("Maximum KLD") { $0.tokens.map { f.fixed($0.kld.maximum, 6) } }
        row("Same top p") { $0.tokens.map { f.percent($0.sameTop) } }
        row("RMS Δp") { $0.tokens.map { f.percent($0.rmsProbabilityDelta) } }
        row("PPL(Q) / PPL(base)") { $0.tokens.map { f.fixed($0.pplQuantized.value, 4) + " / " + f.fixed($0.pplReference.value, 4) } }
        row("ln(PPL(Q)/PPL(base))") { $0.tokens.map { f.estimate($0.lnPPLRatio, 6) } }
        row("feature cosine") { $0.features.map { f.estimate($0.cosine.mean, 6) } }
        row("feature relative error") { $0.features.map { f.estimate($0.relativeError.mean, 6) } }
        row("greedy exact match") { $0.greedy.map { f.percent($0.exactMatch) } }
        row("accuracy exact / normalised") { $0.accuracy.map { "\($0.exact)/\($0.total) · \($0.normalized)/\($0.total)" } }
        var html = "<table class=summary><tr><th></th>"
        for (i, m) in report.models.enumerated() {
            html += "<th><span class=swatch style=\"background:\(colors[i % colors.count])\"></span>\(escape(m.model.name))"
            if let s = m.model.storage { html += "<div class=storage>\(escape(s))</div>" }
            html += "</th>"
        }
        html += "</tr>\n"
        for (name, cells, _) in rows {
            html += "<tr><td>\(escape(name))</td>" + cells.map { "<td class=num>\($0)</td>" }.joined() + "</tr>\n"
        }
        let thresholdNames = Set(report.models.flatMap { $0.thresholds.map(\.name) }).sorted()
        for t in thresholdNames {
            html += "<tr><td>--\(escape(t))</td>"
            for m in report.models {
                if let c = m.thresholds.first(where: { $0.name == t }) {
                    html += "<td class=\"num \(c.passed ? "ok" : "bad")\">\(c.passed ? "kept" : "broken") (\(escape(f.short(c.value))) vs \(escape(f.short(c.limit))))</td>"
                } else { html += "<td>–</td>" }
            }
            html += "</tr>\n"
        }
        return html + "</table>"
    }

    static func sampleTable(_ models: [ModelResult], thumbnail: (String) -> [UInt8]?) -> String {
        let f = ReportFormat.self
        guard let first = models.first else { return "<p>no models</p>" }
        var html = "<table class=samples><tr><th>sample</th><th>images</th>"
        for (i, m) in models.enumerated() {
            html += "<th colspan=3><span class=swatch style=\"background:\(colors[i % colors.count])\"></span>\(escape(m.model.name))</th>"
        }
        html += "</tr><tr><th></th><th></th>" + String(repeating: "<th>mean KLD</th><th>top-1</th><th>greedy</th>", count: models.count) + "</tr>\n"
        let worstKLD = models.compactMap { $0.samples.compactMap { $0.tokens?.meanKLD }.max() }.max() ?? 0
        for (r, row) in first.samples.enumerated() {
            html += "<tr><td class=id>\(escape(row.id))"
            if let a = row.answer { html += "<div class=answer>answer: \(escape(a))</div>" }
            html += "</td><td class=thumbs>"
            for path in row.images.prefix(4) {
                if let bytes = thumbnail(path) {
                    let mime = ImageSignature.isPNG(bytes) ? "image/png" : "image/jpeg"
                    html += "<img alt=\"\(escape(path))\" src=\"data:\(mime);base64,\(Base64.encode(bytes))\">"
                } else {
                    html += "<span class=noimg>\(escape(basename(path)))</span>"
                }
            }
            html += "</td>"
            for m in models {
                guard r < m.samples.count, m.samples[r].id == row.id else { html += "<td colspan=3>–</td>"; continue }
                let s = m.samples[r]
                if let t = s.tokens {
                    let width = worstKLD > 0 ? max(1, Int((t.meanKLD / worstKLD * 60).rounded())) : 1
                    html += "<td class=num>\(f.fixed(t.meanKLD, 5))<div class=bar style=\"width:\(width)px\"></div></td>"
                    html += "<td class=num>\(f.fixed(100 * t.sameTopRate, 1)) %</td>"
                } else { html += "<td>–</td><td>–</td>" }
                if let g = s.greedy {
                    html += g.exactMatch ? "<td class=ok>same</td>" : "<td class=bad>differs at \(g.firstDivergence ?? 0)</td>"
                } else { html += "<td>–</td>" }
            }
            html += "</tr>\n"
            let predictions = models.compactMap { m -> String? in
                guard r < m.samples.count, let p = m.samples[r].prediction else { return nil }
                return "<b>\(escape(m.model.name))</b>: \(escape(p))"
            }
            if !predictions.isEmpty {
                html += "<tr class=pred><td></td><td colspan=\(1 + 3 * models.count)>" + predictions.joined(separator: "<br>") + "</td></tr>\n"
            }
        }
        return html + "</table>"
    }

    // MARK: Charts

    static func histogramChart(_ models: [ModelResult]) -> String {
        let width = 900.0, height = 290.0, left = 56.0, bottom = 50.0, top = 12.0, right = 16.0
        guard let binCount = models.compactMap({ $0.klHistogram?.counts.count }).first, binCount > 0 else { return "" }
        let shares: [[Double]] = models.map { m in
            guard let h = m.klHistogram else { return [] }
            let total = Double(h.counts.reduce(0, +))
            return h.counts.map { total > 0 ? Double($0) / total : 0 }
        }
        let peak = max(0.01, shares.flatMap { $0 }.max() ?? 0)
        let plotW = width - left - right, plotH = height - top - bottom
        let binW = plotW / Double(binCount)
        let barW = binW / Double(max(1, models.count)) * 0.9
        var svg = "<svg class=chart viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=img>"
        svg += axes(left: left, top: top, plotW: plotW, plotH: plotH)
        for k in 0...4 {
            let v = peak * Double(k) / 4
            let y = top + plotH - plotH * Double(k) / 4
            svg += "<line x1=\(n(left)) x2=\(n(left + plotW)) y1=\(n(y)) y2=\(n(y)) class=grid />"
            svg += "<text x=\(n(left - 6)) y=\(n(y + 4)) class=tick text-anchor=end>\(ReportFormat.fixed(100 * v, 0))%</text>"
        }
        for (mi, s) in shares.enumerated() {
            for (i, share) in s.enumerated() where share > 0 {
                let h = plotH * share / peak
                let x = left + Double(i) * binW + Double(mi) * barW + binW * 0.05
                svg += "<rect x=\(n(x)) y=\(n(top + plotH - h)) width=\(n(barW)) height=\(n(h)) fill=\"\(colors[mi % colors.count])\"><title>\(escape(models[mi].model.name)): \(ReportFormat.fixed(100 * share, 2)) %</title></rect>"
            }
        }
        // Decade labels: bin 0 is "≤1e-6", bin 1 + 4k starts decade −6 + k.
        // Bin 0's label sits a line lower so it never runs into the 1e-6 tick next to it.
        svg += "<text x=\(n(left + binW / 2)) y=\(n(top + plotH + 28)) class=tick text-anchor=middle>≤1e-6</text>"
        for k in 0...KLHistogram.decades {
            let i = 1 + k * KLHistogram.binsPerDecade
            guard i < binCount else { break }
            let x = left + Double(i) * binW
            svg += "<line x1=\(n(x)) x2=\(n(x)) y1=\(n(top + plotH)) y2=\(n(top + plotH + 4)) class=axis />"
            svg += "<text x=\(n(x)) y=\(n(top + plotH + 16)) class=tick text-anchor=middle>1e\(Int(KLHistogram.lowestEdge) + k)</text>"
        }
        svg += "<text x=\(n(left + plotW / 2)) y=\(n(height - 6)) class=label text-anchor=middle>KL(fp32 ‖ model) per token, nats</text>"
        svg += legend(models, x: left + plotW - 150, y: top + 8)
        return svg + "</svg>"
    }

    static func layerChart(_ models: [ModelResult]) -> String {
        let width = 900.0, height = 300.0, left = 64.0, bottom = 56.0, top = 12.0, right = 16.0
        let layerNames = models.max { $0.layers.count < $1.layers.count }?.layers.map(\.layer) ?? []
        guard layerNames.count > 0 else { return "" }
        let values = models.flatMap { $0.layers.map(\.relativeError) }.filter { $0 > 0 && $0.isFinite }
        var lo = floor(log10(values.min() ?? 1e-4)), hi = ceil(log10(values.max() ?? 1))
        if hi <= lo { hi = lo + 1 }
        if hi - lo > 8 { lo = hi - 8 }
        let plotW = width - left - right, plotH = height - top - bottom
        func x(_ i: Int) -> Double { left + (layerNames.count == 1 ? plotW / 2 : plotW * Double(i) / Double(layerNames.count - 1)) }
        func y(_ v: Double) -> Double { top + plotH - plotH * (log10(max(v, pow(10, lo))) - lo) / (hi - lo) }
        var svg = "<svg class=chart viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=img>"
        svg += axes(left: left, top: top, plotW: plotW, plotH: plotH)
        for e in Int(lo)...Int(hi) {
            let yy = y(pow(10, Double(e)))
            svg += "<line x1=\(n(left)) x2=\(n(left + plotW)) y1=\(n(yy)) y2=\(n(yy)) class=grid />"
            svg += "<text x=\(n(left - 6)) y=\(n(yy + 4)) class=tick text-anchor=end>1e\(e)</text>"
        }
        let step = max(1, layerNames.count / 16)
        for (i, name) in layerNames.enumerated() where i % step == 0 || i == layerNames.count - 1 {
            svg += "<text x=\(n(x(i))) y=\(n(top + plotH + 14)) class=tick text-anchor=end transform=\"rotate(-35 \(n(x(i))) \(n(top + plotH + 14)))\">\(escape(name))</text>"
        }
        for (mi, m) in models.enumerated() {
            let points = m.layers.enumerated().map { "\(n(x($0.offset))),\(n(y($0.element.relativeError)))" }.joined(separator: " ")
            svg += "<polyline points=\"\(points)\" fill=none stroke=\"\(colors[mi % colors.count])\" stroke-width=2 />"
            for (i, l) in m.layers.enumerated() {
                svg += "<circle cx=\(n(x(i))) cy=\(n(y(l.relativeError))) r=2.5 fill=\"\(colors[mi % colors.count])\"><title>\(escape(m.model.name)) \(escape(l.layer)): relative error \(ReportFormat.short(l.relativeError)), cosine \(ReportFormat.fixed(l.cosine, 6))</title></circle>"
            }
        }
        svg += "<text x=14 y=\(n(top + plotH / 2)) class=label text-anchor=middle transform=\"rotate(-90 14 \(n(top + plotH / 2)))\">relative error</text>"
        svg += legend(models, x: left + 12, y: top + 8)
        return svg + "</svg>"
    }

    static func axes(left: Double, top: Double, plotW: Double, plotH: Double) -> String {
        "<line x1=\(n(left)) x2=\(n(left)) y1=\(n(top)) y2=\(n(top + plotH)) class=axis />"
            + "<line x1=\(n(left)) x2=\(n(left + plotW)) y1=\(n(top + plotH)) y2=\(n(top + plotH)) class=axis />"
    }

    static func legend(_ models: [ModelResult], x: Double, y: Double) -> String {
        var svg = ""
        for (i, m) in models.enumerated() {
            let yy = y + Double(i) * 18
            svg += "<rect x=\(n(x)) y=\(n(yy)) width=12 height=12 fill=\"\(colors[i % colors.count])\" />"
            svg += "<text x=\(n(x + 18)) y=\(n(yy + 10)) class=legend>\(escape(m.model.name))</text>"
        }
        return svg
    }

    static func n(_ v: Double) -> String { String(fixed: v, decimals: 1) }

    static func basename(_ path: String) -> String { path.split(separator: "/").last.map(String.init) ?? path }

    static func escape(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }

    struct Page {
        var text = ""

        mutating func line(_ s: String) { text += s + "\n" }

        mutating func head(title: String) {
            line("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>\(HTMLReport.escape(title))</title>")
            line("<meta name=viewport content=\"width=device-width, initial-scale=1\">")
            line("""
            <style>
            body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1a202c;margin:24px 32px;max-width:1100px}
            h1{font-size:24px;margin:0 0 4px} h1 .sub{font-weight:400;color:#4a5568} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e2e8f0;padding-bottom:4px}
            .meta,.note{color:#4a5568;font-size:13px} code{font:12px ui-monospace,"DejaVu Sans Mono",monospace;background:#edf2f7;padding:1px 4px;border-radius:3px}
            table{border-collapse:collapse;font-size:14px} td,th{padding:5px 10px;border-bottom:1px solid #edf2f7;text-align:left;vertical-align:top}
            th{background:#f7fafc;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
            .storage{font-weight:400;font-size:12px;color:#4a5568} .swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
            .ok{color:#276749} .bad{color:#c53030;font-weight:600} .bar{height:4px;background:#c05621;margin-left:auto;margin-top:3px;border-radius:2px}
            .thumbs img{height:56px;margin-right:4px;border-radius:3px;border:1px solid #e2e8f0} .noimg{font-size:12px;color:#718096}
            .id{font-weight:600} .answer{font-weight:400;font-size:12px;color:#4a5568} tr.pred td{font-size:12px;color:#2d3748;border-bottom:1px solid #cbd5e0}
            svg.chart{background:#fff;border:1px solid #e2e8f0;border-radius:4px;max-width:100%;height:auto}
            .axis{stroke:#4a5568;stroke-width:1} .grid{stroke:#edf2f7;stroke-width:1} .tick{font-size:11px;fill:#4a5568} .label{font-size:12px;fill:#2d3748} .legend{font-size:12px;fill:#1a202c}
            </style></head><body>
            """)
        }
    }
}

/// RFC 4648 base64 (the library modules do without Foundation).
enum Base64 {
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 2 < bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            for s in [18, 12, 6, 0] { out.append(alphabet[Int((v >> UInt32(s)) & 63)]) }
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            let v = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
            out.append(alphabet[Int((v >> 18) & 63)])
            out.append(alphabet[Int((v >> 12) & 63)])
            out.append(rest == 2 ? alphabet[Int((v >> 6) & 63)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }
}
