"""Chat-template parity fixtures for PLMTokenizer's ChatTemplate (rendered by transformers).

Run from the repo root with the pinned venv (Tests/Fixtures/requirements-template.txt):
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 nice -n 19 python Tests/Fixtures/make_template_fixtures.py

Reads the templates (PLM's from the tiny checkpoint, the others from Tests/Fixtures/templates/,
see templates/README.md for where each comes from) and writes templates/template_parity.json:
- "conversations": each conversation of CONVERSATIONS rendered by PerceptionLMProcessor's
  apply_chat_template(..., tokenize=False) for every template and both add_generation_prompt
  values (or the Python exception, e.g. SmolLM2's `'…' + list` TypeError), with the variables
  the processor passes (its tokenizer's special tokens) and the extra keyword arguments;
- for the PLM template also the ids: the rendered prompt tokenized with add_special_tokens=False,
  and the processor's own placeholder expansion, from calling it with real images and videos
  (their tile and frame counts are recorded);
- "snippets": small templates rendered in transformers' Jinja environment (the one
  apply_chat_template compiles with), or the exception they raise, pinning the semantics one
  construct at a time.
"""
import json
from pathlib import Path

import jinja2
import numpy as np
import transformers
from PIL import Image
from transformers import PerceptionLMProcessor
from transformers.utils.chat_template_utils import _compile_jinja_template

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "templates"
MODEL = ROOT / "models" / "tiny-fp32-mha-tied"

TEMPLATES = {
    "plm": "models/tiny-fp32-mha-tied/chat_template.jinja",
    "llama-3.2": "templates/llama-3.2-instruct.jinja",
    "qwen2-vl": "templates/qwen2-vl-instruct.jinja",
    "smollm2": "templates/smollm2-instruct.jinja",
}

# Llama 3.2 writes today's date unless `date_string` is passed; pin it.
EXTRA = {"llama-3.2": {"date_string": "14 Mar 2025"}}


def text(t):
    return {"type": "text", "text": t}


IMAGE = {"type": "image"}
VIDEO = {"type": "video"}

CONVERSATIONS = {
    "user-text": [{"role": "user", "content": [text("Describe the bar plot in the image.")]}],
    "system-user-image": [
        {"role": "system", "content": "  You are terse.\n"},
        {"role": "user", "content": [IMAGE, text("What is this?")]},
    ],
    "text-before-image": [{"role": "user", "content": [text(" Compare:  "), IMAGE, text("and"), IMAGE]}],
    "mixed-media-turns": [
        {"role": "user", "content": [text("First look at this"), VIDEO, IMAGE, text(" then answer.")]},
        {"role": "assistant", "content": [text("A cat on a mat.")]},
        {"role": "user", "content": [IMAGE, VIDEO, text("And these?\n")]},
    ],
    "plain-strings": [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hello there!"},
        {"role": "assistant", "content": " Hi! How can I help? "},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "no-system-many-turns": [
        {"role": "user", "content": [text("one")]},
        {"role": "assistant", "content": [text("two")]},
        {"role": "user", "content": [text("three")]},
        {"role": "assistant", "content": [text("four")]},
        {"role": "user", "content": [VIDEO, text("five")]},
    ],
    "unicode-and-quotes": [
        {"role": "user", "content": [text("Ünïcödé «quotes» \"double\" 'single' \\ back\\slash 日本語 😀\ttab\n\nend")]},
    ],
    "system-as-parts": [
        {"role": "system", "content": [text("System in parts.")]},
        {"role": "user", "content": [text("hi"), IMAGE]},
    ],
    "empty-content": [{"role": "user", "content": []}, {"role": "assistant", "content": ""}],
}

# Real pixels for the PLM ids: 56x56 tiles, up to 4 tiles plus the thumbnail.
IMAGE_SIZES = [(56, 56), (112, 56), (40, 200), (130, 120)]  # (width, height)
VIDEO_FRAMES = [2, 3, 1]

SNIPPETS = [
    # white-space control, trim_blocks and lstrip_blocks
    ("{% if true %}\n  yes\n{% endif %}\nafter", {}),
    ("  {% if true %}x{% endif %}  \n  {%+ if true %}y{% endif %}", {}),
    ("a  {%- if true -%}  b  {%- endif -%}  c", {}),
    ("a\n    {# comment #}\nb\n  {#- trimmed -#}  c", {}),
    ("{{ 'x' -}}\n\n   {{- 'y' }}  {{ 'z' }}", {}),
    ("line\r\nwindows\rold mac\n", {}),
    ("trailing newline kept once\n\n", {}),
    ("{% for i in [1, 2] %}\n    {{ i }}\n{% endfor %}", {}),
    ("{% for i in [1, 2] +%}\n{{ i }}{% endfor %}", {}),
    ("{% raw %}{{ not rendered }}{% endraw %}!", {}),
    ("  {% raw -%}  kept {{ x }}  {%- endraw %}", {}),
    # values and printing
    ("{{ none }}|{{ true }}|{{ 1.0 }}|{{ 1e-5 }}|{{ 1e16 }}|{{ 123456789.125 }}|{{ 0.1 + 0.2 }}|{{ -0.0 }}", {}),
    ("{{ [1, 'a', none, true, 1.5, {'k': \"it's\"}] }}|{{ (1,) }}|{{ () }}|{{ {'a': [1, (2, 3)]} }}", {}),
    ("{{ 'tab\\there' ~ '\\u00e9\\x41' }}|{{ ['new\\nline', '\\x00', 'caf\\u00e9', 'quote\"'] }}", {}),
    ("{{ x }}|{{ x.y }}|{{ x['y'] }}|{{ x.items() }}", {"x": {"y": [1, 2], "z": None}}),
    ("{{ undefined_name }}|{{ undefined_name is defined }}|{{ undefined_name|length }}", {}),
    ("{{ undefined_name.attr }}", {}),
    ("{{ undefined_name + 1 }}", {}),
    # operators
    ("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 3 * 'ab' }} {{ [0] * 3 }}", {}),
    ("{{ 'a' ~ 1 ~ none ~ true }}|{{ 'a' + 'b' }}|{{ [1] + [2] }}|{{ 1 + 2.5 }}|{{ true + 1 }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ 1 / 0 }}", {}),
    ("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'b' > 'a' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'é' == 'e\u0301' }}", {}),
    ("{{ 1 < 'a' }}", {}),
    ("{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'cat' }} {{ 'a' in undefined_name }}", {}),
    ("{{ 1 in 'abc' }}", {}),
    ("{{ 0 or 'x' }} {{ 1 and 'y' }} {{ none or [] }} {{ not [] }} {{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 }}.", {}),
    ("{{ -x|abs }} {{ - 2 ** 2 }} {{ (1, 2)[1] }} {{ 'abc'[1:] }} {{ 'abcdef'[::-2] }} {{ [1, 2, 3][-2:] }} {{ 'abc'[5] }}.", {"x": 3}),
    # scoping
    ("{% set x = 0 %}{% for i in [1, 2, 3] %}{{ x }}{% set x = x + i %}{{ x }};{% endfor %}[{{ x }}]", {}),
    ("{% set ns = namespace(total=0) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }} {{ ns }}", {}),
    ("{% if true %}{% set y = 5 %}{% endif %}{{ y }}", {}),
    ("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c %}block {{ a }}{% endset %}[{{ c }}]", {}),
    ("{% for a, b in [(1, 2), (3, 4)] %}{{ a }}{{ b }}{% endfor %}", {}),
    # loops
    ("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}{{ loop.length }} {% endfor %}", {}),
    ("{% for x in [1, 2, 3] %}{{ loop.previtem }}-{{ loop.nextitem }}-{{ loop.cycle('a', 'b') }} {% endfor %}", {}),
    ("{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}", {}),
    ("{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}", {}),
    ("{% for x in [[1, 2], [3]] %}{% for y in x %}{{ loop.depth }}{{ y }}{% endfor %}{{ loop.depth }}{% endfor %}", {}),
    # filters
    ("{{ ' a b '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ [1, 2, 3]|length }}|{{ 'héllo'|length }}|{{ {'a': 1}|count }}", {}),
    ("{{ items|selectattr('type', 'equalto', 'image')|list|length }} {{ items|rejectattr('type', 'equalto', 'image')|map(attribute='text')|join(',') }}", {"items": [{"type": "image"}, {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
    ("{{ items|selectattr('text')|list }} {{ items|selectattr('type', '==', 'text')|first }} {{ items|map(attribute='type')|unique|list }}", {"items": [{"type": "image"}, {"type": "text", "text": "a"}, {"type": "text", "text": ""}]}),
    ("{{ 'abc'|selectattr('type', 'equalto', 'image')|list }}|{{ [1, 2, 3, 4]|select('odd')|list }}|{{ [1, 2, 3]|reject('equalto', 2)|list }}", {}),
    ("{% if [1]|selectattr('x') %}generator is truthy{% endif %}", {}),
    ("{{ [3, 1, 2]|sort }} {{ [3, 1, 2]|sort(reverse=true) }} {{ ['b', 'A', 'c']|sort }} {{ ['b', 'A', 'c']|sort(case_sensitive=true) }} {{ d|sort(attribute='n')|map(attribute='n')|list }}", {"d": [{"n": 2}, {"n": 1}]}),
    ("{{ [1, 2]|first }} {{ [1, 2]|last }} {{ 'abc'|first }} {{ []|first }}. {{ [1, 2, 3]|reverse|list }} {{ 'abc'|reverse }} {{ [1, 2]|join('-') }} {{ [1, 2]|sum }} {{ [3, 1]|min }} {{ [3, 1]|max }}", {}),
    ("{{ 'Hello World'|upper }} {{ 'Hello World'|lower }} {{ 'hello wORLD-x(y'|title }} {{ 'hELLO'|capitalize }} {{ 'aXa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 2) }}", {}),
    ("{{ undefined_name|default('dflt') }} {{ ''|default('empty', true) }} {{ ''|default('kept') }} {{ none|default('x') }} {{ 5|string ~ 1 }}", {}),
    ("{{ '42'|int }} {{ ' 7 '|int }} {{ '3.9'|int }} {{ 'x'|int }} {{ 'x'|int(5) }} {{ 2.7|int }} {{ true|int }} {{ '0x1f'|int(0, 16) }} {{ '1.5'|float }} {{ 'x'|float }}", {}),
    ("{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ 'é\"\\n'|tojson }}|{{ 'é'|tojson(ensure_ascii=true) }}|{{ [1.0, none, true]|tojson }}", {"d": {"b": [1, "x"], "a": {"c": None}}}),
    ("{{ d|tojson(sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ {1: 'a', 2.5: 'b', true: 'c', none: 'd'}|tojson }}", {"d": {"b": 1, "a": 2}}),
    ("{{ d|items|list }} {% for k, v in d|items %}{{ k }}{{ v }}{% endfor %} {{ d|dictsort_missing }}", {"d": {"b": 1}}),
    ("{{ d|items|list }} {% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent('> ', blank=true) }}", {}),
    ("{{ -3|abs }} {{ 2.5|round }} {{ 3.14159|round(2) }} {{ 2.1|round(0, 'ceil') }} {{ 'x'|e }}{{ '<&>'|escape }}", {}),
    # tests
    ("{{ none is none }} {{ 1 is number }} {{ true is number }} {{ 1 is integer }} {{ true is integer }} {{ 1.0 is float }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} {{ undefined_name is iterable }} {{ 1 is iterable }}", {}),
    ("{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 1 is eq 1 }} {{ 2 is gt 1 }} {{ 'a' is in 'abc' }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ x is sameas none }} {{ x is not none }}", {"x": None}),
    # methods
    ("{{ '  a b  '.strip() }}|{{ 'xxa'.lstrip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}", {}),
    ("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'abc'.upper() }} {{ 'a-b'.replace('-', '+') }} {{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.count('l') }} {{ ', '.join(['a', 'b']) }} {{ 'a\\nb\\r\\nc'.splitlines() }}", {}),
    ("{{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ '  '.isspace() }} {{ 'Hello world'.title() }} {{ 'hello'.capitalize() }} {{ 'prefix-x'.removeprefix('prefix-') }}", {}),
    ("{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d.keys()|list }} {{ d.values()|list }} {{ [1, 2, 2].count(2) }} {{ [1, 2].index(2) }}", {"d": {"a": 1}}),
    # globals
    ("{{ raise_exception('boom: ' ~ 1) }}", {}),
    ("{{ namespace(a=1) }} {{ dict(a=1, b='x') }} {{ range(3)|list }}", {}),
    ("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }}", {}),
    # errors at parse time
    ("{% if true %}unclosed", {}),
    ("{% for x in y %}{% endif %}", {}),
    ("{{ x | nosuchfilter }}", {}),
    ("{{ x is nosuchtest }}", {}),
    ("{{ 1 + }}", {}),
    ("{% endfor %}", {}),
    ("{{ 'unterminated }}", {}),
    ("{# no end", {}),
    ("{% break %}", {}),
]


def exception_name(e: Exception) -> str:
    return type(e).__name__


def render_snippet(source: str, variables: dict) -> dict:
    try:
        template = _compile_jinja_template(source)
    except Exception as e:  # noqa: BLE001 - every failure is a fixture outcome
        return {"error": exception_name(e), "message": str(e), "phase": "parse"}
    try:
        out = template.render(messages=[], tools=None, documents=None, add_generation_prompt=False, **variables)
    except Exception as e:  # noqa: BLE001
        return {"error": exception_name(e), "message": str(e), "phase": "render"}
    return {"rendered": out}


def media_inputs(conversation: list) -> tuple[list, list]:
    """Real images and videos for the placeholders, in the order the rendered prompt has them."""
    images, videos = [], []
    rng = np.random.default_rng(0)
    for message in conversation:
        content = message["content"]
        if not isinstance(content, list):
            continue
        # The PLM template writes each message's images first, then its videos.
        for part in content:
            if part["type"] == "image":
                w, h = IMAGE_SIZES[len(images) % len(IMAGE_SIZES)]
                images.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
        for part in content:
            if part["type"] == "video":
                frames = VIDEO_FRAMES[len(videos) % len(VIDEO_FRAMES)]
                videos.append(rng.integers(0, 256, (frames, 48, 64, 3), dtype=np.uint8))
    return images, videos


def main() -> None:
    processor = PerceptionLMProcessor.from_pretrained(str(MODEL))
    tokenizer = processor.tokenizer
    result = {
        "transformers_version": transformers.__version__,
        "jinja2_version": jinja2.__version__,
        "special_tokens": tokenizer.special_tokens_map,
        "templates": {},
        "snippets": [],
    }
    for name, path in TEMPLATES.items():
        source = (ROOT / path).read_text(encoding="utf-8")
        extra = EXTRA.get(name, {})
        cases = []
        for conv_name, conversation in CONVERSATIONS.items():
            for generation in (True, False):
                case = {"conversation": conv_name, "add_generation_prompt": generation}
                try:
                    case["rendered"] = processor.apply_chat_template(
                        conversation, chat_template=source, tokenize=False, add_generation_prompt=generation, **extra
                    )
                except Exception as e:  # noqa: BLE001
                    case["error"] = exception_name(e)
                    case["message"] = str(e)
                if name == "plm" and "rendered" in case:
                    prompt = case["rendered"]
                    case["ids"] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                    images, videos = media_inputs(conversation)
                    out = processor(text=prompt, images=images or None, videos=videos or None, add_special_tokens=False)
                    case["image_tiles"] = [int(t.shape[0]) for t in out["pixel_values"]] if images else []
                    case["video_frames"] = [int(v.shape[0]) for v in out["pixel_values_videos"]] if videos else []
                    case["expanded_ids"] = [int(i) for i in out["input_ids"][0]]
                cases.append(case)
        result["templates"][name] = {"file": path, "extra": extra, "cases": cases}
    result["conversations"] = CONVERSATIONS
    for source, variables in SNIPPETS:
        result["snippets"].append({"source": source, "variables": variables, **render_snippet(source, variables)})
    (OUT / "template_parity.json").write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print("wrote", OUT / "template_parity.json")


if __name__ == "__main__":
    main()
