"""Times the Python `tokenizers` library the way PLMTokenizer's benchmark does (not a test).

    python Tests/Fixtures/bench_tokenizer.py TOKENIZER.json TEXT-FILE    # time an existing text
    python Tests/Fixtures/bench_tokenizer.py --make-text TEXT-FILE       # write the 1 MB benchmark text

The benchmark text is 1 MiB (1,048,576 bytes, cut at a character boundary) of this machine's Python
standard library sources (code, comments and docstrings: English prose and code), in sorted file
order, after the tokenizer parity corpus (many scripts, emoji, whitespace runs).
Prints best-of-3 load time, best-of-3 single-threaded encode throughput (add_special_tokens=False)
and the FNV-1a 64 checksum of the ids, which `plmq-tokenizer-bench` prints too.
"""
import json
import os
import sys
import sysconfig
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

SIZE = 1 << 20


def make_text(path: Path) -> None:
    corpus = json.loads((Path(__file__).parent / "tokenizers" / "tokenizer_parity.json").read_text(encoding="utf-8"))["corpus"]
    parts = ["\n".join(corpus)]
    total = len(parts[0].encode())
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for f in sorted(stdlib.glob("*.py")):
        chunk = f.read_text(encoding="utf-8", errors="replace")
        parts.append(chunk)
        total += len(chunk.encode())
        if total >= SIZE:
            break
    data = "".join(parts).encode()[:SIZE].decode("utf-8", errors="ignore")
    path.write_bytes(data.encode("utf-8"))


def checksum(ids: list[int]) -> int:
    h = 0xCBF29CE484222325
    for i in ids:
        for k in range(4):
            h = ((h ^ ((i >> (8 * k)) & 0xFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main() -> None:
    if sys.argv[1] == "--make-text":
        make_text(Path(sys.argv[2]))
        return
    json_text = Path(sys.argv[1]).read_text(encoding="utf-8")
    text = Path(sys.argv[2]).read_bytes().decode("utf-8")  # no newline translation
    best_load = min(_timed(lambda: Tokenizer.from_str(json_text))[0] for _ in range(3))
    tok = Tokenizer.from_str(json_text)
    runs = [_timed(lambda: tok.encode(text, add_special_tokens=False).ids) for _ in range(3)]
    best = min(r[0] for r in runs)
    ids = runs[0][1]
    mb = len(text.encode()) / 1e6
    print(f"tokenizers: load {best_load:.3f} s, encode {len(text.encode())} bytes in {best:.3f} s = {mb / best:.2f} MB/s, "
          f"{len(ids)} ids, checksum {checksum(ids):x}")


def _timed(f):
    t = time.perf_counter()
    r = f()
    return time.perf_counter() - t, r


if __name__ == "__main__":
    main()
