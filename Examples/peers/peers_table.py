#!/usr/bin/env python3
"""Prints the markdown table of a compare_peers.sh run folder (its JSON outputs and meta.json).

    python Examples/peers/peers_table.py /work/peers/run-20261202T030000Z

Every figure is a median with its (min–max) over the runs; one whose spread (max − min) exceeds 10 %
of its median is marked "noisy", one during which other processes took more than 5 % of the
machine's CPU time (NAME.quiet.json, from when_quiet.py) "disturbed". Ratios are speed ratios (higher is better for plmq): tokens/s
divided by tokens/s, and for the vision tower the other side's seconds divided by plmq's.
"""
import json
import statistics
import sys
from pathlib import Path

NOISY = 0.10


DISTURBED = 5.0  # percent of the machine's CPU time taken by other processes during a measurement


class Figure:
    def __init__(self, median, low, high, runs=None):
        self.median, self.low, self.high, self.runs = median, low, high, runs
        self.others = None  # from NAME.quiet.json

    @property
    def noisy(self):
        return self.median > 0 and (self.high - self.low) / self.median > NOISY

    def text(self, digits):
        spread = f" ({self.low:.{digits}f}–{self.high:.{digits}f})" if self.runs != 1 else " (1 run)"
        marks = (" noisy" if self.noisy else "")
        if self.others is not None and self.others > DISTURBED:
            marks += f" disturbed ({self.others:.0f} %)"
        return f"{self.median:.{digits}f}{spread}" + marks


def load(folder, name):
    path = folder / f"{name}.json"
    if not path.is_file() or path.stat().st_size == 0:
        return None
    return json.loads(path.read_text())


def hf_partial(log):
    """The measurements an interrupted hf_timing.py run finished (it logs each as a JSON line)."""
    if not log.is_file():
        return None
    rows = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return {"measurements": rows} if rows else None


def others(folder, name):
    """Share of the machine's CPU time that other processes took during the measurement."""
    quiet = load(folder, f"{name}.quiet")
    return None if quiet is None else quiet.get("others_percent")


def marked(figure, folder, name):
    if isinstance(figure, Figure):
        figure.others = others(folder, name)
    return figure


def plmq_figure(obj, section, key, where):
    if obj is None:
        return None
    for row in obj.get(section, []):
        if all(row.get(k) == v for k, v in where.items()):
            s = row[key]
            return Figure(s["median"], s["min"], s["max"], obj.get("runs"))
    return None


def llama_figure(rows, **where):
    if rows is None:
        return None
    for row in rows:
        if all(row.get(k) == v for k, v in where.items()):
            samples = row.get("samples_ts") or [row["avg_ts"]]
            return Figure(statistics.median(samples), min(samples), max(samples), len(samples))
    return None


def hf_figure(obj, kind, dtype, key, size_key, size):
    if obj is None:
        return None
    for row in obj["measurements"]:
        if row["kind"] == kind and row["dtype"] == dtype and row.get(size_key) == size:
            if row.get("skipped"):
                return f"skipped (≈{row['estimated_seconds']:.0f} s)"
            s = row["seconds"]
            if kind == "prefill":
                return Figure(size / s["median"], size / s["max"], size / s["min"], s["runs"])
            return Figure(s["median"] / size, s["min"] / size, s["max"] / size, s["runs"])
    return None


def cell(figure, digits):
    if figure is None:
        return "—"
    if isinstance(figure, str):
        return figure
    return figure.text(digits)


def ratio(ours, theirs, time_based=False):
    if not isinstance(ours, Figure) or not isinstance(theirs, Figure) or ours.median <= 0 or theirs.median <= 0:
        return "—"
    r = theirs.median / ours.median if time_based else ours.median / theirs.median
    return f"**{r:.2f}×**" if r < 1 else f"{r:.2f}×"


def main():
    folder = Path(sys.argv[1])
    meta = json.loads((folder / "meta.json").read_text())
    # A run finished by later invocations on the same folder has one meta file per invocation
    # (meta-HHMMSS.json for the earlier ones): the table covers all their settings.
    metas = [json.loads(p.read_text()) for p in sorted(folder.glob("meta*.json"))]

    def union(key):
        return sorted({int(v) for m in metas for v in str(m[key]).split()})

    threads, prompts, tiles, depths = union("threads"), union("prompts"), union("tiles"), union("depth")
    rows = []
    for t in threads:
        hf = load(folder, f"hf-t{t}") or hf_partial(folder / f"hf-t{t}.log")
        entries = []
        for bits, kind in [(4, "q4_0"), (8, "q8_0")]:
            ours = marked(plmq_figure(load(folder, f"plmq-int{bits}-decode-t{t}"), "depth", "tokens_per_s", {"depth": 0}),
                          folder, f"plmq-int{bits}-decode-t{t}")
            theirs = marked(llama_figure(load(folder, f"llama-{kind}-decode-t{t}"), n_prompt=0, n_gen=64, n_depth=0),
                            folder, f"llama-{kind}-decode-t{t}")
            entries.append((f"decode tok/s, int{bits} vs {kind.upper()}", ours, theirs, None, None, 1, False))
        for p in prompts:
            ours = marked(plmq_figure(load(folder, f"plmq-int4-prefill{p}-t{t}"), "prompt", "tokens_per_s", {"tokens": p}),
                          folder, f"plmq-int4-prefill{p}-t{t}")
            theirs = marked(llama_figure(load(folder, f"llama-q4_0-prefill{p}-t{t}"), n_prompt=p, n_gen=0), folder, f"llama-q4_0-prefill{p}-t{t}")
            entries.append((f"prefill-{p} tok/s, int4 vs Q4_0", ours, theirs,
                            marked(hf_figure(hf, "prefill", "bfloat16", "tokens", "tokens", p), folder, f"hf-t{t}"),
                            marked(hf_figure(hf, "prefill", "float32", "tokens", "tokens", p), folder, f"hf-t{t}"), 1, False))
        for depth in depths:
            ours = marked(plmq_figure(load(folder, f"plmq-int4-depth{depth}-t{t}"), "depth", "tokens_per_s", {"depth": depth}),
                          folder, f"plmq-int4-depth{depth}-t{t}")
            theirs = marked(llama_figure(load(folder, f"llama-q4_0-depth{depth}-t{t}"), n_prompt=0, n_gen=64, n_depth=depth),
                            folder, f"llama-q4_0-depth{depth}-t{t}")
            entries.append((f"decode tok/s at depth {depth}, int4 vs Q4_0", ours, theirs, None, None, 1, False))
        vision = load(folder, f"plmq-int4-vision-t{t}")
        for n in tiles:
            ours = marked(plmq_figure(vision, "vision", "seconds_per_tile", {"tiles": n}), folder, f"plmq-int4-vision-t{t}")
            entries.append((f"vision tower s/tile, {n} tile{'s' if n > 1 else ''}, int4", ours, "cannot run PE",
                            marked(hf_figure(hf, "vision", "bfloat16", "seconds", "tiles", n), folder, f"hf-t{t}"),
                            marked(hf_figure(hf, "vision", "float32", "seconds", "tiles", n), folder, f"hf-t{t}"), 2, True))
        for label, ours, theirs, bf16, fp32, digits, time_based in entries:
            rows.append((label, t, cell(ours, digits), cell(theirs, digits), cell(bf16, digits), cell(fp32, digits),
                         ratio(ours, theirs, time_based), ratio(ours, bf16, time_based), ratio(ours, fp32, time_based)))
    first = {}
    for i, r in enumerate(rows):
        first.setdefault(r[0], i)
    rows.sort(key=lambda r: first[r[0]])  # grouped by measurement, threads in order (the sort is stable)
    settings = "; ".join(f"from {m['date']}: threads {m['threads']}, {m['runs']} runs ({m['long_runs']} for prompts over 1024 "
                         f"tokens and depths)" for m in metas)
    print(f"Measured on {meta['cpu']} ({meta['cores']} cores), plmq {meta['plmq_commit']}, llama.cpp {meta['llama_cpp']}, "
          f"checkpoint {meta['checkpoint']} ({settings}); median (min–max) over the runs; "
          f"ratios are speed ratios, bold where plmq is slower; — = not measured.")
    print()
    print("| measurement | threads | plmq | llama.cpp | HF bf16 | HF fp32 | plmq / llama.cpp | plmq / HF bf16 | plmq / HF fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")


if __name__ == "__main__":
    main()
