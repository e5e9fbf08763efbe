#!/usr/bin/env python3
"""Train a tiny PerceptionLM on synthetic shape scenes, so that plmq's demo has a model that knows
something (random weights make accuracy numbers and answers meaningless).

The task: 224x224 scenes with 1-3 flat shapes (circle, square, triangle; six colours; small or large)
placed in the cells of a 3x3 grid, and questions whose answers need the image: colour, shape,
counts, presence, where an object is, its size, left/right and above/below of two objects, which of
two is larger. Answers are one or two words ("red", "top left", "yes", "two").

The model is a real ``PerceptionLMForConditionalGeneration`` (transformers), shaped like PLM-1B in
miniature: a PE-L-style timm tower (CLS token, RoPE, layer scale) at 112-pixel tiles, the two-layer
projector with 2x2 pooling, a Llama decoder with GQA, llama3 RoPE and a tied head. The tokenizer is
a byte-level BPE trained here on the task text, followed by PLM's 256 special tokens (as
Tests/Fixtures/make_fixtures.py builds it); prompts go through the PLM chat template (default
system prompt) and images through the real ``PerceptionLMProcessor`` (thumbnail + one tile, i.e.
``max_num_tiles=1``: 2 tiles x 16 tokens per image). The loss is on the answer tokens (and the
closing <|eot_id|>) only. A training sample is one image with 1-4 questions asked in one chat (the
image in the first user turn, exactly the evaluation prompt); evaluation asks one question.

Every linear layer's input width is a multiple of 128 (plmq quantizes in groups of 32/64/128 along
the input), except the patch embedding (3x14x14 = 588, as in every PE tower).

Outputs (``--out``, default ``Examples/``):

* ``shapes-plm/``          the trained model + processor, written by ``save_pretrained`` (bf16)
* ``samples/``             held-out samples: ``samples.jsonl`` + ``images/NNNN.png``
* ``images/``              four more held-out scenes for the runner demo, with ``QUESTIONS.md``
* ``shapes-plm-eval.json`` held-out accuracy of the saved checkpoint (fp32 and bf16) as
  transformers computes it, and the per-sample fp32 greedy answers and token ids

The held-out scenes come from their own seed, and training skips any scene identical to one of
them (the check is on the scene description, which fixes the pixels), so no held-out image is
ever trained on.

Training is resumable: a checkpoint is written atomically to ``--scratch`` every ``--save-every``
steps, and the data of step s is a pure function of (seed, s), so a resumed run sees the same
batches. Run from the repository root with the pinned packages of Examples/requirements.txt:

    nice -n 19 /work/venv/bin/python Examples/train_tiny_plm.py --scratch /work/train-scratch

``--export-only`` re-exports and re-evaluates from the last scratch checkpoint.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Threads that sleep instead of spinning while they wait: on a machine shared with builds, spinning
# OpenMP threads at nice 19 made a training step 3-5x slower (measured: 1.1 s passive vs 3-7 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    GenerationConfig,
    LlamaConfig,
    PerceptionLMConfig,
    PerceptionLMForConditionalGeneration,
    PerceptionLMImageProcessor,
    PerceptionLMProcessor,
    PerceptionLMVideoProcessor,
    PreTrainedTokenizerFast,
    TimmWrapperConfig,
)
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

SEED = 1313
TRAIN_SEED = 7001  # data stream of the training steps
VAL_SEED = 7002  # monitoring set (teacher-forced accuracy during training)
HELDOUT_SEED = 7003  # the committed held-out samples
DEMO_SEED = 7004  # the demo images

NUM_HELDOUT = 200
NUM_VAL = 192
NUM_DEMO_IMAGES = 4

# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------

CANVAS = 224  # PNG side; the processor resizes to the 112-pixel tile
TILE = 112
PATCH = 14
GRID = 3
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (45, 85, 215),
    "yellow": (235, 205, 35),
    "purple": (140, 60, 180),
    "orange": (245, 135, 30),
}
SHAPES = ["circle", "square", "triangle"]
SIZES = {"small": (14, 17), "large": (27, 33)}  # radius range in canvas pixels
ROW_NAMES = ["top", "middle", "bottom"]
COL_NAMES = ["left", "middle", "right"]
NUMBERS = ["zero", "one", "two", "three"]


def cell_name(row, col):
    """Where an object is, in one or two words: "top left", "top", "center", "right", ..."""
    if row == 1 and col == 1:
        return "center"
    if row == 1:
        return COL_NAMES[col]
    if col == 1:
        return ROW_NAMES[row]
    return f"{ROW_NAMES[row]} {COL_NAMES[col]}"


def random_scene(rng):
    """A scene description: background grey and 1-3 objects with distinct (colour, shape) and
    distinct grid cells. Integers only, so the description fixes the pixels exactly."""
    n = int(rng.integers(1, 4))
    cells = rng.choice(GRID * GRID, size=n, replace=False)
    kinds = rng.choice(len(COLOURS) * len(SHAPES), size=n, replace=False)
    colour_names = list(COLOURS)
    cell = CANVAS / GRID
    objects = []
    for c, k in zip(cells, kinds):
        row, col = divmod(int(c), GRID)
        size = "small" if rng.random() < 0.5 else "large"
        lo, hi = SIZES[size]
        r = int(rng.integers(lo, hi + 1))
        slack = max(int(cell / 2 - r - 3), 0)
        cx = int(round(cell * (col + 0.5))) + int(rng.integers(-slack, slack + 1))
        cy = int(round(cell * (row + 0.5))) + int(rng.integers(-slack, slack + 1))
        objects.append(
            dict(colour=colour_names[int(k) // len(SHAPES)], shape=SHAPES[int(k) % len(SHAPES)],
                 size=size, row=row, col=col, cx=cx, cy=cy, r=r)
        )
    bg = int(rng.integers(200, 251))
    return dict(bg=bg, objects=objects)


def scene_key(scene):
    return json.dumps(scene, sort_keys=True, separators=(",", ":"))


def render(scene):
    img = Image.new("RGB", (CANVAS, CANVAS), (scene["bg"],) * 3)
    d = ImageDraw.Draw(img)
    for o in scene["objects"]:
        cx, cy, r, fill = o["cx"], o["cy"], o["r"], COLOURS[o["colour"]]
        if o["shape"] == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif o["shape"] == "square":
            h = round(r * 0.88)  # about the circle's area
            d.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
        else:
            d.polygon([(cx, cy - r), (cx - r, cy + round(r * 0.8)), (cx + r, cy + round(r * 0.8))], fill=fill)
    return img


# --------------------------------------------------------------------------------------------
# Questions
# --------------------------------------------------------------------------------------------

# A few phrasings per question kind, with both spellings of colour, so the demo tolerates how a
# person asks. {a} and {b} are "<colour> <shape>" references, unique in the scene by construction.
TEMPLATES = {
    "colour": ["What colour is the {shape}?", "What color is the {shape}?", "Which colour is the {shape}?"],
    "shape": ["What shape is the {colour} object?", "What is the shape of the {colour} object?",
              "Which shape is {colour}?"],
    "count": ["How many shapes are there?", "How many objects are in the image?", "How many shapes do you see?"],
    "count_colour": ["How many {colour} shapes are there?", "How many {colour} objects are there?"],
    "count_shape": ["How many {shape}s are there?", "How many {shape}s are in the image?"],
    "exists": ["Is there a {colour} {shape}?", "Is there a {colour} {shape} in the image?"],
    "where": ["Where is the {a}?", "Where is the {a} in the image?"],
    "size": ["Is the {a} small or large?", "What size is the {a}?"],
    "left_right": ["Is the {a} left or right of the {b}?", "Is the {a} to the left or right of the {b}?"],
    "above_below": ["Is the {a} above or below the {b}?"],
    "larger": ["Which is larger, the {a} or the {b}?", "Which is bigger, the {a} or the {b}?"],
}
KINDS = list(TEMPLATES)


def ref(o):
    return f"{o['colour']} {o['shape']}"


def question_for(scene, rng):
    """Picks a question kind valid for the scene (uniformly), then its parameters. Returns
    (kind, prompt, answer)."""
    objs = scene["objects"]
    by_shape = {s: [o for o in objs if o["shape"] == s] for s in SHAPES}
    by_colour = {c: [o for o in objs if o["colour"] == c] for c in COLOURS}
    pairs = [(a, b) for a in objs for b in objs if a is not b]
    valid = {
        "colour": [s for s in SHAPES if len(by_shape[s]) == 1],
        "shape": [c for c in COLOURS if len(by_colour[c]) == 1],
        "count": [None],
        "count_colour": [None],
        "count_shape": [None],
        "exists": [None],
        "where": objs,
        "size": objs,
        "left_right": [(a, b) for a, b in pairs if a["col"] != b["col"]],
        "above_below": [(a, b) for a, b in pairs if a["row"] != b["row"]],
        "larger": [(a, b) for a, b in pairs if a["size"] != b["size"]],
    }
    kinds = [k for k in KINDS if valid[k]]
    kind = kinds[int(rng.integers(len(kinds)))]
    template = TEMPLATES[kind][int(rng.integers(len(TEMPLATES[kind])))]
    choice = valid[kind][int(rng.integers(len(valid[kind])))]

    def present_or_not(options, present):
        # Half the time something in the scene, half the time anything (often absent).
        pool = present if rng.random() < 0.5 else options
        return pool[int(rng.integers(len(pool)))]

    if kind == "colour":
        return kind, template.format(shape=choice), by_shape[choice][0]["colour"]
    if kind == "shape":
        return kind, template.format(colour=choice), by_colour[choice][0]["shape"]
    if kind == "count":
        return kind, template, NUMBERS[len(objs)]
    if kind == "count_colour":
        c = present_or_not(list(COLOURS), [o["colour"] for o in objs])
        return kind, template.format(colour=c), NUMBERS[len(by_colour[c])]
    if kind == "count_shape":
        s = present_or_not(SHAPES, [o["shape"] for o in objs])
        return kind, template.format(shape=s), NUMBERS[len(by_shape[s])]
    if kind == "exists":
        if rng.random() < 0.5:
            o = objs[int(rng.integers(len(objs)))]
            c, s = o["colour"], o["shape"]
        else:
            # An absent combination; half of them share the colour or the shape of an object.
            absent = [(c, s) for c in COLOURS for s in SHAPES
                      if not any(o["colour"] == c and o["shape"] == s for o in objs)]
            near = [(c, s) for c, s in absent if any(o["colour"] == c or o["shape"] == s for o in objs)]
            pool = near if near and rng.random() < 0.5 else absent
            c, s = pool[int(rng.integers(len(pool)))]
        answer = "yes" if any(o["colour"] == c and o["shape"] == s for o in objs) else "no"
        return kind, template.format(colour=c, shape=s), answer
    if kind == "where":
        return kind, template.format(a=ref(choice)), cell_name(choice["row"], choice["col"])
    if kind == "size":
        return kind, template.format(a=ref(choice)), choice["size"]
    a, b = choice
    if kind == "left_right":
        return kind, template.format(a=ref(a), b=ref(b)), "left" if a["col"] < b["col"] else "right"
    if kind == "above_below":
        return kind, template.format(a=ref(a), b=ref(b)), "above" if a["row"] < b["row"] else "below"
    bigger = a if a["size"] == "large" else b
    return kind, template.format(a=ref(a), b=ref(b)), ref(bigger)


def make_sample(rng, exclude=None):
    while True:
        scene = random_scene(rng)
        if exclude is None or scene_key(scene) not in exclude:
            break
    kind, prompt, answer = question_for(scene, rng)
    return dict(scene=scene, kind=kind, prompt=prompt, answer=answer)


def make_conversation(rng, exclude, max_turns):
    """A training sample: one scene and 1..max_turns different questions about it, asked in one
    chat (the image in the first user turn, as at evaluation). Later turns add labelled answers
    at a small cost: the sequence is dominated by the system prompt and the image tokens."""
    first = make_sample(rng, exclude)
    turns = int(rng.integers(1, max_turns + 1))
    qas = [(first["prompt"], first["answer"])]
    for _ in range(8 * turns):
        if len(qas) == turns:
            break
        _, q, a = question_for(first["scene"], rng)
        if all(q != p for p, _ in qas):
            qas.append((q, a))
    return dict(scene=first["scene"], kind=first["kind"], prompt=first["prompt"], answer=first["answer"], qas=qas)


def fixed_set(seed, n, exclude=None):
    rng = np.random.default_rng(seed)
    return [make_sample(rng, exclude) for _ in range(n)]


def train_batch(step, batch_size, exclude, max_turns):
    rng = np.random.default_rng([TRAIN_SEED, step])
    return [make_conversation(rng, exclude, max_turns) for _ in range(batch_size)]


# --------------------------------------------------------------------------------------------
# Tokenizer, chat template, processor (as Tests/Fixtures/make_fixtures.py builds them)
# --------------------------------------------------------------------------------------------

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|image|>",
    "<|video|>",
    "<|reserved_special_token_2|>",
    "<|reserved_special_token_3|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|reserved_special_token_4|>",
    "<|eot_id|>",
] + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)]
assert len(SPECIAL_TOKENS) == 256

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual "
    "content that the user provides, and assist the user with a variety of tasks using natural "
    "language."
)
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}"
    "    {%- set system_message = '" + DEFAULT_SYSTEM_PROMPT + "' %}"
    "{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- system_message }}"
    "{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<|image|>' }}"
    "{%- endfor %}"
    "{%- for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<|video|>' }}"
    "{%- endfor %}"
    "{%- for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{- content['text'] | trim }}"
    "{%- endfor %}"
    "{{'<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)

# Base (BPE) vocabulary size: 512 ids, then the 256 special tokens, so vocab = 768 = 6 x 128.
BASE_VOCAB = 512


def tokenizer_corpus():
    """Every question phrasing with every filler, every answer, the system prompt, plus a little
    general text so that words outside the task still split into sensible pieces."""
    lines = [DEFAULT_SYSTEM_PROMPT] * 8 + ["system", "user", "assistant"] * 8
    refs = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    for kind, templates in TEMPLATES.items():
        for t in templates:
            for c in COLOURS:
                for s in SHAPES:
                    lines.append(t.format(colour=c, shape=s, a=f"{c} {s}", b=refs[(SHAPES.index(s) + 1) % len(refs)]))
    answers = list(COLOURS) + SHAPES + NUMBERS + ["yes", "no", "small", "large", "left", "right",
                                                    "above", "below"] + refs
    answers += [cell_name(r, c) for r in range(GRID) for c in range(GRID)]
    lines += answers * 4
    lines += [
        "Describe the image. What is in the picture? Answer with one or two words.",
        "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 100 2024.",
        "Please look at the scene and tell me what you see: shapes, colours, sizes and positions.",
    ]
    return lines


def build_tokenizer():
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(
        vocab_size=BASE_VOCAB, min_frequency=1, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[],
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    model_json = json.loads(tok.to_str())["model"]
    vocab = dict(model_json["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    # If the small corpus has fewer pairs than merges wanted, fill the base vocabulary with entries
    # no input can produce (U+27E8/U+27E9 are outside the byte-level alphabet), so the special
    # tokens keep their ids.
    for i in range(len(vocab), BASE_VOCAB):
        vocab[f"\u27e8filler{i}\u27e9"] = i
    B = len(vocab)
    assert B == BASE_VOCAB, B
    # Rebuilt with ignore_merges=True, as in the Llama-3 tokenizer.
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == B + i
    bos = SPECIAL_TOKENS[0]
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, B)],
            ),
        ]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=11520,
        clean_up_tokenization_spaces=True,
        extra_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
    )
    assert fast.image_token_id == B + 2 and fast.video_token_id == B + 3
    return fast, B, len(merges)


def build_processor(tokenizer):
    image_processor = PerceptionLMImageProcessor(
        vision_input_type="thumb+tile",
        tile_size=TILE,
        max_num_tiles=1,
        max_frame_tiles=1,
        size={"height": TILE, "width": TILE},
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    video_processor = PerceptionLMVideoProcessor(size={"height": TILE, "width": TILE})
    return PerceptionLMProcessor(
        image_processor=image_processor, video_processor=video_processor, tokenizer=tokenizer,
        patch_size=PATCH, pooling_ratio=2, chat_template=CHAT_TEMPLATE,
    )


def prompt_text(processor, question):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

LLAMA3_ROPE = {
    "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
}
VISION_ARGS = dict(
    embed_dim=128, depth=4, num_heads=4, img_size=(TILE, TILE), global_pool="",
    use_post_transformer_norm=False, init_values=0.1, ref_feat_shape=(TILE // PATCH, TILE // PATCH),
)  # MLP 512 (ratio 4), CLS token, RoPE grid offset 1: a PE-L tower in miniature
TEXT_ARGS = dict(
    hidden_size=256, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2, head_dim=32,
    intermediate_size=512, hidden_act="silu", rope_parameters=dict(LLAMA3_ROPE), tie_word_embeddings=True,
)


def build_model(B):
    vocab = B + 256
    eos = [B + 1, B + 9]  # <|end_of_text|>, <|eot_id|>
    text_config = LlamaConfig(
        vocab_size=vocab, rms_norm_eps=1e-5, max_position_embeddings=11520, bos_token_id=B,
        eos_token_id=eos, pad_token_id=B + 1, **TEXT_ARGS,
    )
    vision_config = TimmWrapperConfig(architecture="vit_pe_core_large_patch14_336", model_args=dict(VISION_ARGS))
    config = PerceptionLMConfig(
        text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projector_pooling_ratio=2,
        vision_use_cls_token=True, image_token_id=B + 2, video_token_id=B + 3, tie_word_embeddings=True,
    )
    torch.manual_seed(SEED)
    model = PerceptionLMForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        do_sample=False, bos_token_id=B, eos_token_id=eos, pad_token_id=B + 1, max_new_tokens=8,
    )
    return model


# --------------------------------------------------------------------------------------------
# Batches, loss, evaluation
# --------------------------------------------------------------------------------------------


def conversation_text(processor, qas):
    messages = []
    for i, (q, a) in enumerate(qas):
        content = ([{"type": "image"}] if i == 0 else []) + [{"type": "text", "text": q}]
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
    return processor.apply_chat_template(messages, tokenize=False)


def encode(processor, samples, B):
    """Processor inputs for teacher forcing: the chat with its answers, labels only on the answers
    and their closing <|eot_id|> (right padding, padded positions ignored). A sample without
    "qas" is one turn; its text is the evaluation prompt followed by the answer."""
    tok = processor.tokenizer
    turns = [s.get("qas", [(s["prompt"], s["answer"])]) for s in samples]
    texts = [conversation_text(processor, qas) for qas in turns]
    images = [render(s["scene"]) for s in samples]
    batch = processor(images=images, text=texts, return_tensors="pt", padding=True, add_special_tokens=False)
    header = tok("<|start_header_id|>assistant<|end_header_id|>\n\n", add_special_tokens=False)["input_ids"]
    eot = B + 9
    labels = torch.full_like(batch["input_ids"], -100)
    for i, qas in enumerate(turns):
        ids = batch["input_ids"][i].tolist()
        starts = [j + len(header) for j in range(len(ids) - len(header) + 1) if ids[j:j + len(header)] == header]
        assert len(starts) == len(qas), (qas, starts)
        for start, (_, a) in zip(starts, qas):
            end = ids.index(eot, start) + 1
            # The answer must tokenize the same inside the chat as alone (checked, not assumed).
            assert ids[start:end] == tok(a + "<|eot_id|>", add_special_tokens=False)["input_ids"], (a, ids[start:end])
            labels[i, start:end] = batch["input_ids"][i, start:end]
    batch["labels"] = labels
    return batch


def shared_prefix_length(input_ids, image_token_id):
    """Tokens before the first image token: BOS, the system turn and the user header, the same in
    every sample (the chat template puts the image first)."""
    first = (input_ids[0] == image_token_id).nonzero()[0].item()
    assert (input_ids[:, :first] == input_ids[:1, :first]).all()
    return first


def training_loss(model, batch):
    """The model's own loss (mean cross-entropy over the labelled tokens), computed with two exact
    shortcuts that halve the training time on CPU:

    * the thumbnail and the single tile of a square image with max_num_tiles=1 are the same
      pixels, so the vision tower runs on one of them and its features fill both tiles' tokens;
    * the prompt prefix before the image is the same in every sample, so the decoder runs it once
      and the batch continues from its (repeated, differentiable) KV cache.
    """
    inner = model.model
    input_ids, pixel_values, labels = batch["input_ids"], batch["pixel_values"], batch["labels"]
    tiles = pixel_values.shape[1]
    assert all(torch.equal(pixel_values[:, 0], pixel_values[:, t]) for t in range(1, tiles))
    features = inner.get_image_features(pixel_values=pixel_values[:, :1], return_dict=True).pooler_output
    features = features.repeat_interleave(tiles, dim=0)  # (image, tile) order, as flatten(0, 1)
    embeds = inner.get_input_embeddings()(input_ids)
    mask = (input_ids == model.config.image_token_id).unsqueeze(-1)
    assert int(mask.sum()) * embeds.shape[-1] == features.numel()
    embeds = embeds.masked_scatter(mask, features.to(embeds.dtype))
    p = shared_prefix_length(input_ids, model.config.image_token_id)
    lm = inner.language_model
    prefix = lm(inputs_embeds=embeds[:1, :p], use_cache=True)
    cache = prefix.cache
    cache.batch_repeat_interleave(input_ids.shape[0])
    out = lm(inputs_embeds=embeds[:, p:], attention_mask=batch["attention_mask"], cache=cache, use_cache=True)
    logits = model.lm_head(out.last_hidden_state).float()
    # Position p-1 (the last prefix token) predicts an image token, which is never labelled.
    target = labels[:, p + 1:]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1),
                                             ignore_index=-100)


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


@torch.no_grad()
def teacher_forced_accuracy(model, processor, samples, B, bs=64):
    """Share of samples whose every answer token (and the closing <|eot_id|>) is the argmax under
    teacher forcing: the same as greedy exact match, in one forward per batch."""
    model.eval()
    right, loss_sum = 0, 0.0
    for i in range(0, len(samples), bs):
        batch = encode(processor, samples[i:i + bs], B)
        labels = batch.pop("labels")
        out = model(**batch)
        pred = out.logits[:, :-1].argmax(-1)
        tgt = labels[:, 1:]
        mask = tgt != -100
        ok = ((pred == tgt) | ~mask).all(1)
        right += int(ok.sum())
        loss_sum += float(torch.nn.functional.cross_entropy(out.logits[:, :-1][mask], tgt[mask])) * len(ok)
    model.train()
    return right / len(samples), loss_sum / len(samples)


@torch.no_grad()
def greedy_answers(model, processor, images, prompts, max_new_tokens=8):
    """Greedy generate() through the processor, one sample at a time (no padding), as a runner
    would. Returns (answer text, new token ids including the eos) per sample."""
    model.eval()
    results = []
    for img, q in zip(images, prompts):
        # The rendered chat text starts with BOS already: no second one.
        inputs = processor(images=[img], text=prompt_text(processor, q), return_tensors="pt", add_special_tokens=False)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        text = processor.tokenizer.decode(new, skip_special_tokens=True)
        results.append((text.strip(), new))
    return results


def normalise(text):
    return " ".join(text.strip().lower().rstrip(".").split())


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def save_atomic(obj, path):
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(args, model, processor, B, exclude, val):
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    ckpt_path = scratch / "train-state.pt"
    log_path = scratch / "train-log.jsonl"
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "pos_embed" in name or "cls_token" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.98), eps=1e-8,
    )
    step, elapsed = 0, 0.0
    # Everything that changes the batches or the schedule: a state saved under other settings is
    # not resumed silently (use another --scratch).
    recipe = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "warmup", "weight_decay", "max_turns")}
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        if state.get("recipe") != recipe:
            sys.exit(f"{ckpt_path} was saved with {state.get('recipe')}, not {recipe}: use another --scratch")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        print(f"resumed at step {step} ({elapsed / 60:.1f} min trained)", flush=True)
    model.train()
    with torch.no_grad():  # the shortcuts of training_loss must give the model's own loss
        check = encode(processor, train_batch(step, 8, exclude, args.max_turns), B)
        fast, ref = float(training_loss(model, check)), float(model(**check).loss)
        assert abs(fast - ref) <= 1e-4 * max(1.0, abs(ref)), (fast, ref)
        print(f"training_loss {fast:.6f} = model loss {ref:.6f}", flush=True)
    t0 = time.time() - elapsed
    while step < args.steps:
        lr = lr_at(step, args.steps, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = encode(processor, train_batch(step, args.batch_size, exclude, args.max_turns), B)
        loss = training_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        step += 1
        record = {"step": step, "loss": round(float(loss.detach()), 5), "lr": lr, "gnorm": round(gnorm, 3),
                  "min": round((time.time() - t0) / 60, 2)}
        if step % args.eval_every == 0 or step == args.steps:
            acc, vloss = teacher_forced_accuracy(model, processor, val, B)
            record.update(val_acc=acc, val_loss=round(vloss, 5))
        if step % 10 == 0 or "val_acc" in record:
            print(json.dumps(record), flush=True)
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if step % args.save_every == 0 or step == args.steps:
            save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                         "elapsed": time.time() - t0, "recipe": recipe}, ckpt_path)
    return time.time() - t0


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export(args, model, processor, heldout, demo, train_seconds, steps_done):
    out = Path(args.out)
    ckpt_dir = out / "shapes-plm"
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True)
    model.to(torch.bfloat16).save_pretrained(ckpt_dir)
    processor.save_pretrained(ckpt_dir)

    samples_dir = out / "samples"
    if samples_dir.exists():
        shutil.rmtree(samples_dir)
    (samples_dir / "images").mkdir(parents=True)
    records, images = [], []
    for i, s in enumerate(heldout):
        rel = f"images/{i + 1:04d}.png"
        img = render(s["scene"])
        img.save(samples_dir / rel, format="PNG", optimize=True)
        images.append(Image.open(samples_dir / rel).convert("RGB"))
        records.append({"id": f"shapes-{i + 1:04d}", "images": [rel], "prompt": s["prompt"], "answer": s["answer"]})
    with open(samples_dir / "samples.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    # Evaluate the *saved* checkpoint, as anyone loading the folder would: fp32 (bf16 weights
    # upcast) and bf16, greedy generate() through the saved processor, images read back from PNG.
    processor = PerceptionLMProcessor.from_pretrained(ckpt_dir)
    prompts = [r["prompt"] for r in records]
    per_dtype = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        m = PerceptionLMForConditionalGeneration.from_pretrained(ckpt_dir, dtype=dtype).eval()
        t = time.time()
        per_dtype[name] = greedy_answers(m, processor, images, prompts)
        print(f"[{name}] greedy eval of {len(records)} samples in {time.time() - t:.1f} s", flush=True)
    accuracy, by_kind = {}, {}
    for name, res in per_dtype.items():
        right = [normalise(a) == normalise(r["answer"]) for (a, _), r in zip(res, records)]
        accuracy[name] = sum(right) / len(right)
        kinds = {}
        for ok, s in zip(right, heldout):
            k = kinds.setdefault(s["kind"], [0, 0])
            k[0] += ok
            k[1] += 1
        by_kind[name] = {k: {"right": v[0], "total": v[1]} for k, v in sorted(kinds.items())}
    agree = sum(a[1] == b[1] for a, b in zip(per_dtype["fp32"], per_dtype["bf16"])) / len(records)
    print(f"held-out exact match: fp32 {accuracy['fp32']:.3f}, bf16 {accuracy['bf16']:.3f}; "
          f"bf16 tokens equal fp32 on {agree:.3f}", flush=True)

    # Demo images with a few good questions each, answered by the fp32 model.
    demo_dir = out / "images"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True)
    m32 = PerceptionLMForConditionalGeneration.from_pretrained(ckpt_dir, dtype=torch.float32).eval()
    demo_records = []
    for i, (scene, questions) in enumerate(demo):
        path = demo_dir / f"shapes-{i + 1}.png"
        render(scene).save(path, format="PNG", optimize=True)
        img = Image.open(path).convert("RGB")
        res = greedy_answers(m32, processor, [img] * len(questions), [q for q, _ in questions])
        demo_records.append(dict(image=path.name, scene=describe(scene),
                                 qa=[dict(question=q, answer=a, model=r[0]) for (q, a), r in zip(questions, res)]))
    write_demo_note(demo_dir / "QUESTIONS.md", demo_records)

    weights = ckpt_dir / "model.safetensors"
    params = sum(p.numel() for p in m32.parameters())
    report = {
        "checkpoint": "shapes-plm",
        "samples": "samples/samples.jsonl",
        "num_samples": len(records),
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "generation": {"greedy": True, "max_new_tokens": 8, "batch": 1,
                       "match": "exact after strip, lower-case, trailing '.' removed"},
        "parameters": params,
        "model_safetensors_bytes": weights.stat().st_size,
        "model_safetensors_sha256": file_sha256(weights),
        "train_steps": steps_done,
        "train_batch_size": args.batch_size,
        "train_minutes": round(train_seconds / 60, 1),
        "accuracy": accuracy,
        "accuracy_by_kind": by_kind,
        "bf16_tokens_equal_fp32": agree,
        "fp32": [
            {"id": r["id"], "kind": s["kind"], "answer": r["answer"], "output": a, "tokens": toks,
             "correct": normalise(a) == normalise(r["answer"])}
            for (a, toks), r, s in zip(per_dtype["fp32"], records, heldout)
        ],
        "bf16_outputs": [a for a, _ in per_dtype["bf16"]],
    }
    with open(out / "shapes-plm-eval.json", "w") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return report


def describe(scene):
    return ", ".join(f"{o['size']} {o['colour']} {o['shape']} ({cell_name(o['row'], o['col'])})"
                     for o in scene["objects"])


def demo_scenes(exclude):
    """Four held-out scenes with three objects each, and for each questions of different kinds
    with their true answers."""
    rng = np.random.default_rng(DEMO_SEED)
    scenes = []
    while len(scenes) < NUM_DEMO_IMAGES:
        s = random_scene(rng)
        sizes = {o["size"] for o in s["objects"]}
        if len(s["objects"]) < 2 + (len(scenes) % 2) or len(sizes) < 2 or scene_key(s) in exclude:
            continue
        qs, seen = [], set()
        qrng = np.random.default_rng([DEMO_SEED, len(scenes)])
        while len(qs) < 5:
            kind, q, a = question_for(s, qrng)
            if kind not in seen:
                seen.add(kind)
                qs.append((q, a))
        scenes.append((s, qs))
    return scenes


def write_demo_note(path, demo_records):
    lines = [
        "# Demo images",
        "",
        "Held-out scenes (never trained on) for `plmq run`, made by `Examples/train_tiny_plm.py`.",
        "Each line: question → true answer (what transformers' fp32 greedy generate answered).",
        "The model knows only this task: shapes (circle, square, triangle), colours (red, green, blue,",
        "yellow, purple, orange), sizes (small, large), positions in a 3×3 grid (top left … center …",
        "bottom right), counts, presence, left/right, above/below, which is larger.",
        "",
    ]
    for rec in demo_records:
        lines += [f"## {rec['image']}", "", f"Scene: {rec['scene']}.", ""]
        for qa in rec["qa"]:
            lines.append(f"- {qa['question']} → {qa['answer']} (model: {qa['model']})")
        lines.append("")
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent), help="where the outputs go (Examples/)")
    ap.add_argument("--scratch", default="/work/train-scratch", help="resumable training state (outside the repo)")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--max-turns", type=int, default=4, help="questions per training image (1..N, one chat)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export-only", action="store_true", help="export + evaluate the last scratch checkpoint")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    tokenizer, B, merges = build_tokenizer()
    processor = build_processor(tokenizer)
    model = build_model(B)
    params = sum(p.numel() for p in model.parameters())
    print(f"vocab {B + 256} (BPE merges {merges}), {params:,} parameters "
          f"({params * 2 / 1e6:.2f} MB in bf16)", flush=True)

    heldout = fixed_set(HELDOUT_SEED, NUM_HELDOUT)
    demo = demo_scenes(set())
    exclude = {scene_key(s["scene"]) for s in heldout} | {scene_key(s) for s, _ in demo}
    val = fixed_set(VAL_SEED, NUM_VAL, exclude)

    if args.export_only:
        state = torch.load(Path(args.scratch) / "train-state.pt", weights_only=False)
        model.load_state_dict(state["model"])
        seconds, steps_done = state["elapsed"], state["step"]
    else:
        seconds, steps_done = train(args, model, processor, B, exclude, val), args.steps
    print(f"training: {seconds / 60:.1f} min", flush=True)
    report = export(args, model, processor, heldout, demo, seconds, steps_done)
    print(json.dumps({k: report[k] for k in ("accuracy", "parameters", "model_safetensors_bytes", "train_minutes")}))


if __name__ == "__main__":
    sys.exit(main())
