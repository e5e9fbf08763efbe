#!/usr/bin/env python3
"""Generate the PerceptionLM (PLM) test fixtures for plmq with the real transformers code.

What it makes (all random weights, nothing is downloaded; runs with HF_HUB_OFFLINE=1):

* ``models/<variant>/`` -- tiny Hugging Face checkpoints written by ``save_pretrained`` of a
  ``PerceptionLMForConditionalGeneration`` and of a ``PerceptionLMProcessor`` (config.json,
  generation_config.json, model.safetensors or shards + index, tokenizer.json,
  tokenizer_config.json, processor_config.json, chat_template.jinja).
  Variants: ``tiny-fp32-mha-tied``, ``tiny-bf16-gqa-llama3``, ``tiny-g-nocls`` and
  ``tiny-bf16-gqa-llama3-sharded`` (same weights as ``tiny-bf16-gqa-llama3``, >= 3 shards).
* ``cases/<variant>/<case>.safetensors`` -- inputs and fp32 reference outputs (``text``,
  ``tile1``, ``tiles3``, ``png`` and, for ``tiny-bf16-gqa-llama3`` only, ``long``), plus
  ``cases/<variant>/png.png`` (the synthetic image fed through the real processor).
* ``cases/<variant>/tensors.safetensors`` -- fp32 copies (torch ``.float()``) of five checkpoint
  tensors, same names; ``cases/<variant>/rope.safetensors`` -- decoder ``inv_freq`` and cos/sin at
  position 2999, timm vision RoPE sin/cos tables (interleaved pairs, [x | y] halves).
* ``cases/tiny-fp32-mha-tied/image_video.safetensors`` -- one image tile plus a 2-frame video, video
  tokens before image tokens; ``cases/tiny-g-nocls/batch2.safetensors`` -- a batch of 2 equal-length
  prompts with one tile each, from one batched forward.
* ``cases/f16_values.safetensors`` -- 4096 F16 and 4096 BF16 values (no NaN) with torch's ``.float()``.
* ``cases/tokenizer_cases.json`` -- strings with their ids from the trained tokenizer, and a
  rendered chat-template prompt with its ids.
* ``SHA256SUMS`` -- sha256 of every file above (relative paths).

The tokenizer is a small byte-level BPE trained here (Llama-3 split regex + ByteLevel, BOS
post-processor, ``ignore_merges`` like the Llama-3 tokenizer) with base vocabulary ``B``, followed by
PLM's 256 special tokens at ids ``B+0 .. B+255``. All reference outputs are computed in fp32 from the
*saved* checkpoint reloaded with ``from_pretrained(dir, dtype=torch.float32)``. Everything is
seeded and single-threaded, so re-running reproduces byte-identical files (on the same machine and
library versions, see requirements.txt). See README.md for the tensor names.

Run from the repository root (the venv must have the packages of requirements.txt):

    python Tests/Fixtures/make_fixtures.py                 # writes into Tests/Fixtures/
    python Tests/Fixtures/make_fixtures.py --out /tmp/fx   # writes elsewhere (e.g. to compare)

Full-size mode (not committed; peak RSS ~10 GB, ~3.3 GB disk, ~2 min):

    python Tests/Fixtures/make_fixtures.py --plm1b OUTDIR

writes a PLM-1B-shaped random bf16 checkpoint to OUTDIR (PE-L tower 1024x23 at 448 px, Llama
2048x16, vocab 128256, llama3 RoPE, tied head; tokenizer padded so the special tokens sit at
128000..128255) and OUTDIR/case_tile1.safetensors (one 448 tile, ~330-token prompt, fp32 reference
``logits``, ``image_features``, ``vision_hidden``, ``greedy_tokens``).
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
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
torch.set_num_threads(1)

FIXTURES = Path(__file__).resolve().parent
MAX_NEW_TOKENS = 8
MIN_MARGIN = 1e-2

# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

# The Llama-3 pre-tokenizer split pattern.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# PLM's 256 special tokens, in id order (ids B+0 .. B+255).
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

# PLM chat template (same rendering as transformers' PerceptionLM converter): BOS, system turn
# (default prompt unless the first message is a system message), then per message all image
# markers, then all video markers, then the trimmed text items; optional assistant header.
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

# Small English training text for the BPE (written for this script).
CORPUS = """
You are a helpful language and vision assistant. You are able to understand the visual content
that the user provides, and assist the user with a variety of tasks using natural language.
Describe the image in detail. What is shown in the picture? Describe the bar plot in the image.
What color is the square? How many circles are there? Where is the red triangle? Answer briefly.
The system reads an image, splits it into tiles, encodes every tile with a vision transformer,
projects the features into the language model, and then the language model writes an answer.
The quick brown fox jumps over the lazy dog near the river bank, and the dog does not move.
A small model can still be useful when it is tested carefully against a reference implementation.
Numbers such as 1, 12, 123, 2024, 3.14159 and 1000000 appear in tables, charts and receipts.
The chart shows four categories: step, horror, mood, and lumber. Each bar has a different height.
There is a blue sky above the green field, a yellow sun on the left and a white cloud on the right.
People walk along the street, cars wait at the light, and a bicycle leans against the wall.
The video shows a group of people in green shirts and white shorts performing a jump rope routine.
She said that the weather would be warm tomorrow, so they planned a picnic in the park by the lake.
He wasn't sure whether the train would arrive on time; it's often late when it rains.
They've been working on the project for months, and we'll see the results next week.
Please list the objects in the scene: a table, two chairs, a lamp, a book, and a cup of coffee.
The gradient goes from dark to light across the image, with stripes at the top and bottom.
Tokenizers split text into pieces; the pieces are mapped to integer ids that the model embeds.
Every layer of the transformer mixes information between positions with attention and then
applies a feed-forward network to each position. Rotary position embeddings encode where a token is.
In the morning the market opens early. Farmers bring fruit, vegetables, bread, cheese and flowers.
Children play football in the school yard while teachers talk about the next lesson in history.
The museum has paintings, statues, old maps, coins and letters written hundreds of years ago.
Water boils at one hundred degrees Celsius at sea level, and freezes at zero degrees.
The mountain road is narrow and steep, with sharp turns, tall trees and a view of the valley.
Read the question, look at the image again, think about the answer, and then respond clearly.
Question: what is the main object in this photo? Answer: a red car parked in front of a house.
Question: what time does the clock show? Answer: it shows ten minutes past three.
Summarize the document in three sentences. Translate the sentence into French. Write a poem.
"""


def build_tokenizer(pad_base_to=None):
    """Train the small byte-level BPE and wrap it like PLM's Llama-3 tokenizer.

    Returns (PreTrainedTokenizerFast, B) where B is the id of <|begin_of_text|>.
    With pad_base_to (e.g. 128000) unreachable filler entries are appended to the BPE vocabulary
    so that the special tokens land at the real PLM ids.
    """
    num_merges = 256
    base_vocab = 256 + num_merges  # B = 512
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=base_vocab,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # The system prompt and a few prompt phrases are repeated so that BPE merges them early and
    # the fixture prompts stay short.
    corpus = [line for line in CORPUS.strip().split("\n")]
    corpus += [DEFAULT_SYSTEM_PROMPT, "What shapes are in this image?",
               "The quick brown fox jumps over the lazy dog."] * 12
    tok.train_from_iterator(corpus, trainer=trainer)
    assert tok.get_vocab_size() == base_vocab, f"BPE trained only {tok.get_vocab_size()} tokens"

    # Rebuild the model from its vocab/merges with ignore_merges=True (as the Llama-3 tokenizer).
    model_json = json.loads(tok.to_str())["model"]
    vocab = dict(model_json["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    if pad_base_to is not None:
        # U+27E8/U+27E9 are not in the byte-level alphabet, so these entries are never produced.
        for i in range(len(vocab), pad_base_to):
            vocab[f"\u27e8filler{i}\u27e9"] = i
    B = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == B + i
    bos = SPECIAL_TOKENS[0]
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{bos} $A",
                pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                special_tokens=[(bos, B)],
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
    assert fast.image_token_id == B + 2 and fast.video_token_id == B + 3, (fast.image_token_id, B)
    return fast, B


def build_processor(tokenizer, tile_size, max_num_tiles):
    image_processor = PerceptionLMImageProcessor(
        vision_input_type="thumb+tile",
        tile_size=tile_size,
        max_num_tiles=max_num_tiles,
        max_frame_tiles=1,
        size={"height": tile_size, "width": tile_size},
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    video_processor = PerceptionLMVideoProcessor(size={"height": tile_size, "width": tile_size})
    return PerceptionLMProcessor(
        image_processor=image_processor,
        video_processor=video_processor,
        tokenizer=tokenizer,
        patch_size=14,
        pooling_ratio=2,
        chat_template=CHAT_TEMPLATE,
    )


# --------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------

PE_L = "vit_pe_core_large_patch14_336"
PE_G = "vit_pe_core_gigantic_patch14_448"
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}

VARIANTS = {
    "tiny-fp32-mha-tied": dict(
        seed=1001,
        save_dtype=torch.float32,
        embed_std=0.15,
        out_gain=1.5,
        final_gain=10.0,
        arch=PE_L,
        vision_args=dict(
            embed_dim=64, depth=2, num_heads=4, img_size=(56, 56), global_pool="",
            use_post_transformer_norm=False, init_values=0.1, ref_feat_shape=(32, 32),
        ),
        text=dict(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            head_dim=16, intermediate_size=160, hidden_act="silu",
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
            tie_word_embeddings=True,
        ),
        vision_use_cls_token=True,
    ),
    "tiny-bf16-gqa-llama3": dict(
        seed=2002,
        save_dtype=torch.bfloat16,
        embed_std=0.15,
        out_gain=1.5,
        final_gain=8.0,
        arch=PE_L,
        vision_args=dict(
            embed_dim=32, depth=3, num_heads=2, img_size=(56, 56), global_pool="",
            use_post_transformer_norm=False, init_values=0.1, ref_feat_shape=(4, 4),
        ),
        text=dict(
            hidden_size=128, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
            head_dim=16, intermediate_size=192, hidden_act="silu",
            rope_parameters=dict(LLAMA3_ROPE), tie_word_embeddings=False,
        ),
        vision_use_cls_token=True,
        long_case=True,
    ),
    "tiny-g-nocls": dict(
        seed=3005,
        save_dtype=torch.bfloat16,
        embed_std=0.15,
        out_gain=1.5,
        final_gain=8.0,
        arch=PE_G,
        # mlp_ratio stays the arch default 8960/1536, so the MLP hidden is int(48*5.833) = 280
        vision_args=dict(
            embed_dim=48, depth=2, num_heads=2, img_size=(56, 56), global_pool="",
            use_post_transformer_norm=False, init_values=0.1, ref_feat_shape=(4, 4),
        ),
        # head_dim (32) != hidden/heads (16) on purpose: q/o projections are 128 wide.
        text=dict(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=32, intermediate_size=160, hidden_act="silu",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False,
        ),
        vision_use_cls_token=False,
    ),
}
SHARDED_FROM = "tiny-bf16-gqa-llama3"
SHARDED_NAME = "tiny-bf16-gqa-llama3-sharded"

PLM1B = dict(
    seed=4004,
    save_dtype=torch.bfloat16,
    embed_std=0.05,
    out_gain=1.5,
    final_gain=8.0,
    arch=PE_L,
    vision_args=dict(
        embed_dim=1024, depth=23, img_size=(448, 448), global_pool="",
        use_post_transformer_norm=False, init_values=0.1, ref_feat_shape=(32, 32),
    ),
    text=dict(
        hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
        head_dim=64, intermediate_size=8192, hidden_act="silu",
        rope_parameters=dict(LLAMA3_ROPE), tie_word_embeddings=True,
    ),
    vision_use_cls_token=True,
)


def make_config(spec, B):
    vocab = B + 256
    bos, eos = B, [B + 1, B + 9]
    vision_config = TimmWrapperConfig(architecture=spec["arch"], model_args=dict(spec["vision_args"]))
    text_config = LlamaConfig(
        vocab_size=vocab,
        rms_norm_eps=1e-5,
        max_position_embeddings=11520,
        bos_token_id=bos,
        eos_token_id=eos,
        **spec["text"],
    )
    return PerceptionLMConfig(
        text_config=text_config.to_dict(),
        vision_config=vision_config.to_dict(),
        projector_pooling_ratio=2,
        vision_use_cls_token=spec["vision_use_cls_token"],
        image_token_id=B + 2,
        video_token_id=B + 3,
        tie_word_embeddings=spec["text"]["tie_word_embeddings"],
    )


@torch.no_grad()
def init_weights(model, seed, embed_std, out_gain=1.0, final_gain=1.0):
    """Deterministic random weights, scaled so that tiny models give decisive greedy logits.

    out_gain scales the decoder's o_proj/down_proj (the residual-branch outputs) so that the
    last hidden state is not dominated by the current token's own embedding (which, with a tied
    head, makes greedy decoding repeat the input token forever); final_gain scales the final
    RMSNorm weight, which sets the logit scale."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        shape = p.shape
        if name.endswith("embed_tokens.weight") or name.endswith("lm_head.weight"):
            w = torch.randn(shape, generator=gen) * embed_std
        elif ".gamma_" in name:
            w = 0.2 + 0.8 * torch.rand(shape, generator=gen)
        elif name.endswith("cls_token") or name.endswith("pos_embed"):
            w = torch.randn(shape, generator=gen) * 0.5
        elif p.ndim == 1 and "norm" in name and name.endswith(".weight"):
            w = 1.0 + 0.1 * torch.randn(shape, generator=gen)
            if name == "model.language_model.norm.weight":
                w = w * final_gain
        elif p.ndim == 1:
            w = 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = p[0].numel()
            w = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
            if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                w = w * out_gain
        p.copy_(w.to(p.dtype))


def build_model(spec, B):
    config = make_config(spec, B)
    model = PerceptionLMForConditionalGeneration(config)
    init_weights(model, spec["seed"], spec["embed_std"], spec.get("out_gain", 1.0), spec.get("final_gain", 1.0))
    model.generation_config = GenerationConfig(do_sample=False, bos_token_id=B, eos_token_id=[B + 1, B + 9])
    return model.eval()


def save_checkpoint(model, processor, out_dir, dtype, max_shard_size=None):
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    model = model.to(dtype)
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(out_dir, **kwargs)
    processor.save_pretrained(out_dir)


def load_fp32(path):
    model = PerceptionLMForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Reference computations
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def greedy(model, input_ids, pixel_values, n, pixel_values_videos=None):
    """Own greedy loop (prefill, argmax, append; KV cache; eos ignored). Returns tokens, margins,
    and the prefill logits of the last position."""
    out = model(input_ids=input_ids, pixel_values=pixel_values, pixel_values_videos=pixel_values_videos,
                use_cache=True, logits_to_keep=1)
    cache = out.cache
    last = out.logits[0, -1].float()
    prefill_last = last.clone()
    tokens, margins = [], []
    for _ in range(n):
        top = torch.topk(last, 2)
        margins.append(float(top.values[0] - top.values[1]))
        tok = int(top.indices[0])
        tokens.append(tok)
        out = model(input_ids=torch.tensor([[tok]]), cache=cache, use_cache=True)
        cache = out.cache
        last = out.logits[0, -1].float()
    return tokens, margins, prefill_last


@torch.no_grad()
def reference(model, input_ids, pixel_values, full_logits=True, n=MAX_NEW_TOKENS, check_generate=True,
              pixel_values_videos=None):
    res = {}
    if pixel_values is not None:
        img = model.model.get_image_features(pixel_values=pixel_values, return_dict=True)
        res["vision_hidden"] = img.last_hidden_state.float().contiguous()
        res["image_features"] = img.pooler_output.float().contiguous()
    logits = model(input_ids=input_ids, pixel_values=pixel_values, pixel_values_videos=pixel_values_videos).logits.float()
    assert torch.isfinite(logits).all()
    tokens, margins, prefill_last = greedy(model, input_ids, pixel_values, n, pixel_values_videos)
    # The cached greedy path must agree with the full forward on the last position.
    assert torch.allclose(prefill_last, logits[0, -1], atol=1e-4, rtol=1e-5)
    if check_generate:
        extra = {} if pixel_values is None else {"pixel_values": pixel_values}
        if pixel_values_videos is not None:
            extra["pixel_values_videos"] = pixel_values_videos
        gen = model.generate(
            input_ids=input_ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, **extra
        )
        eos = set(model.generation_config.eos_token_id)
        gen_tokens = gen[0, input_ids.shape[1]:].tolist()
        if not eos.intersection(tokens):
            assert gen_tokens == tokens, (gen_tokens, tokens)
    if full_logits:
        res["logits"] = logits.contiguous()
    else:
        res["logits_last"] = logits[:, -8:].contiguous()
    res["greedy_tokens"] = torch.tensor(tokens, dtype=torch.int64)
    res["greedy_margins"] = torch.tensor(margins, dtype=torch.float32)
    return res, min(margins)


ST_DTYPES = {torch.float32: "F32", torch.int64: "I64", torch.bfloat16: "BF16", torch.float16: "F16"}


def write_safetensors(path, tensors, metadata):
    """Write a safetensors file with a byte-stable header.

    safetensors' own writer serialises ``__metadata__`` from a hash map, so its key order (and
    the file's bytes) changes from run to run. This writer emits the same format with sorted keys:
    8-byte little-endian header size, JSON header padded with spaces to a multiple of 8, then the
    tensors (largest element size first, then by name, so every tensor is aligned)."""
    names = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header, blobs, offset = {}, [], 0
    for k in names:
        t = tensors[k].detach().cpu().contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[k] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def write_case(path, inputs, outputs, metadata):
    tensors = {}
    for k, v in list(inputs.items()) + list(outputs.items()):
        if v is not None:
            tensors[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, tensors, metadata)
    # Round trip through the reference reader.
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {k: str(v) for k, v in metadata.items()}
        for k, v in tensors.items():
            assert torch.equal(f.get_tensor(k), v.detach().cpu()), k


def synthetic_png(path):
    """100x70 RGB image: gradients, a few shapes and stripes. Deterministic."""
    w, h = 100, 70
    x = np.arange(w)[None, :].repeat(h, 0)
    y = np.arange(h)[:, None].repeat(w, 1)
    arr = np.stack(
        [(x * 255 // (w - 1)), (y * 255 // (h - 1)), ((x + y) * 3) % 256], axis=-1
    ).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle([8, 10, 38, 40], fill=(220, 30, 40))
    d.ellipse([55, 12, 90, 47], fill=(20, 60, 200), outline=(255, 255, 255))
    d.polygon([(20, 66), (45, 48), (70, 66)], fill=(250, 220, 0))
    for i in range(0, w, 10):
        d.line([(i, 0), (i + 9, 5)], fill=(0, 0, 0), width=1)
    img.save(path, format="PNG")
    return Image.open(path).convert("RGB")


def random_pixels(gen, tiles, size):
    return (0.5 * torch.randn((1, tiles, 3, size, size), generator=gen)).clamp(-1.0, 1.0)


def image_tokens(n):
    return "<|image|>" * n


# --------------------------------------------------------------------------------------------
# Tiny fixtures
# --------------------------------------------------------------------------------------------


def make_tiny(out_root):
    out_root = Path(out_root)
    models_dir = out_root / "models"
    cases_dir = out_root / "cases"
    for d in (models_dir, cases_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    tokenizer, B = build_tokenizer()
    processor = build_processor(tokenizer, tile_size=56, max_num_tiles=4)
    tpt = (56 // 14 // 2) ** 2  # tokens per tile = 4
    summary = {"B": B, "vocab": B + 256, "variants": {}}

    write_tokenizer_cases(processor, tokenizer, B, cases_dir / "tokenizer_cases.json")

    for name, spec in VARIANTS.items():
        print(f"[{name}] building", flush=True)
        model = build_model(spec, B)
        vdir = models_dir / name
        save_checkpoint(model, processor, vdir, spec["save_dtype"])
        if name == SHARDED_FROM:
            # Same (bf16) weights, small shards.
            total = sum(p.numel() * p.element_size() for p in model.parameters())
            shard = f"{max(total // 4 // 1000, 1)}KB"
            save_checkpoint(model, processor, models_dir / SHARDED_NAME, spec["save_dtype"], max_shard_size=shard)
            shards = sorted(p.name for p in (models_dir / SHARDED_NAME).glob("model-*.safetensors"))
            assert len(shards) >= 3, shards
            assert (models_dir / SHARDED_NAME / "model.safetensors.index.json").exists()
        del model

        ref = load_fp32(vdir)
        if spec["save_dtype"] == torch.float32:
            # Reloading an fp32 checkpoint reproduces the in-memory model exactly.
            again = build_model(spec, B)
            for (k1, v1), (k2, v2) in zip(sorted(again.state_dict().items()), sorted(ref.state_dict().items())):
                assert k1 == k2 and torch.equal(v1, v2), k1
            del again
        if name == SHARDED_FROM:
            sh = load_fp32(models_dir / SHARDED_NAME)
            for (k1, v1), (k2, v2) in zip(sorted(sh.state_dict().items()), sorted(ref.state_dict().items())):
                assert k1 == k2 and torch.equal(v1, v2), k1
            del sh

        gen = torch.Generator().manual_seed(spec["seed"] + 7)
        vcases = cases_dir / name
        vcases.mkdir(parents=True, exist_ok=True)
        margins = {}

        def run(case, input_ids, pixel_values, extra_meta=None, full_logits=True, check_generate=True):
            outs, m = reference(ref, input_ids, pixel_values, full_logits=full_logits, check_generate=check_generate)
            assert m > MIN_MARGIN, f"{name}/{case}: greedy margin {m} too small; change the seed"
            meta = {"variant": name, "case": case, "max_new_tokens": MAX_NEW_TOKENS,
                    "seq_len": input_ids.shape[1], "image_token_id": B + 2, "bos_token_id": B}
            if pixel_values is not None:
                meta["num_tiles"] = pixel_values.shape[1]
            if not full_logits:
                meta["logits_last"] = 8
            meta.update(extra_meta or {})
            write_case(vcases / f"{case}.safetensors",
                       {"input_ids": input_ids, "pixel_values": pixel_values}, outs, meta)
            margins[case] = m
            print(f"  {case}: L={input_ids.shape[1]} min margin {m:.4f} tokens {outs['greedy_tokens'].tolist()}",
                  flush=True)

        # text
        text = "The quick brown fox jumps over the lazy dog."
        ids = tokenizer(text, return_tensors="pt").input_ids
        run("text", ids, None, {"prompt": text})

        # tile1: one tile, 4 image tokens
        text = "Describe " + image_tokens(tpt) + " this picture."
        ids = tokenizer(text, return_tensors="pt").input_ids
        assert int((ids == B + 2).sum()) == tpt
        run("tile1", ids, random_pixels(gen, 1, 56), {"prompt": text})

        # tiles3: three tiles (one image), placeholders split into three groups of 4
        text = ("Compare " + image_tokens(tpt) + " and " + image_tokens(tpt) + " with "
                + image_tokens(tpt) + " please.")
        ids = tokenizer(text, return_tensors="pt").input_ids
        assert int((ids == B + 2).sum()) == 3 * tpt
        run("tiles3", ids, random_pixels(gen, 3, 56), {"prompt": text})

        # png: real processor on a synthetic PNG with the chat template
        img = synthetic_png(vcases / "png.png")
        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": "What shapes are in this image?"}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = processor(text=prompt, images=[img], return_tensors="pt", add_special_tokens=False)
        ids, pv = enc["input_ids"], enc["pixel_values"].float()
        # The processor saved next to the model must give the same inputs.
        saved = PerceptionLMProcessor.from_pretrained(vdir)
        prompt2 = saved.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc2 = saved(text=prompt2, images=[img], return_tensors="pt", add_special_tokens=False)
        assert prompt2 == prompt and torch.equal(enc2["input_ids"], ids)
        assert torch.equal(enc2["pixel_values"].float(), pv)
        check_saved_tokenizer(vdir, cases_dir / "tokenizer_cases.json")
        assert pv.shape == (1, 5, 3, 56, 56), pv.shape
        assert int((ids == B).sum()) == 1 and int(ids[0, 0]) == B
        assert int((ids == B + 2).sum()) == 5 * tpt
        run("png", ids, pv, {"prompt": prompt, "image": "png.png"})

        if spec.get("long_case"):
            g = torch.Generator().manual_seed(spec["seed"] + 11)
            ids = torch.randint(0, B, (1, 3000), generator=g, dtype=torch.int64)
            ids[0, 0] = B
            run("long", ids, None, {}, full_logits=False, check_generate=False)

        make_extra_cases(name, spec, ref, vdir, vcases, tokenizer, B, tpt, margins)

        summary["variants"][name] = {"min_margin": min(margins.values()), "margins": margins}
        del ref

    write_float_values(cases_dir / "f16_values.safetensors")

    # the png is identical for every variant; keep it per variant as documented
    return summary


# --------------------------------------------------------------------------------------------
# Extra cases: raw tensors, RoPE tables, video, batch, half-float conversions
# --------------------------------------------------------------------------------------------

VIDEO_CASE_VARIANT = "tiny-fp32-mha-tied"
BATCH_CASE_VARIANT = "tiny-g-nocls"
RAW_TENSOR_NAMES = [
    "model.vision_tower.timm_model.blocks.0.attn.qkv.weight",
    "model.vision_tower.timm_model.pos_embed",
    "model.language_model.norm.weight",
    "model.multi_modal_projector.linear_1.bias",
]
TEXT_ROPE_POSITION = 2999


def make_extra_cases(name, spec, ref, vdir, vcases, tokenizer, B, tpt, margins):
    write_raw_tensors(name, ref, vdir, vcases / "tensors.safetensors")
    write_rope(name, ref, vcases / "rope.safetensors")
    if name == VIDEO_CASE_VARIANT:
        m = write_video_case(name, spec, ref, vcases / "image_video.safetensors", tokenizer, B, tpt)
        margins["image_video"] = m
    if name == BATCH_CASE_VARIANT:
        write_batch_case(name, spec, ref, vcases / "batch2.safetensors", B, tpt)


def write_raw_tensors(name, ref, vdir, path):
    """fp32 copies (torch .float()) of a few checkpoint tensors as stored in model.safetensors."""
    from safetensors.torch import load_file

    stored = load_file(str(vdir / "model.safetensors"))
    state = ref.state_dict()
    tensors, dtypes = {}, set()
    for k in RAW_TENSOR_NAMES:
        dtypes.add(ST_DTYPES[stored[k].dtype])
        tensors[k] = stored[k].float().contiguous()
        assert torch.equal(tensors[k], state[k]), k
    assert len(dtypes) == 1, dtypes
    write_case(path, tensors, {}, {"variant": name, "case": "tensors", "stored_dtype": dtypes.pop()})


@torch.no_grad()
def write_rope(name, ref, path):
    """Decoder inv_freq and cos/sin at one position; timm vision RoPE sin/cos tables."""
    rot = ref.model.language_model.rotary_emb
    inv_freq = rot.inv_freq.detach().float().clone()
    cos, sin = rot(torch.zeros(1, dtype=torch.float32), torch.tensor([[TEXT_ROPE_POSITION]]))
    cos, sin = cos[0, 0].float().contiguous(), sin[0, 0].float().contiguous()
    freqs = TEXT_ROPE_POSITION * inv_freq
    assert rot.attention_scaling == 1.0
    assert torch.equal(cos, torch.cat([freqs, freqs]).cos()) and torch.equal(sin, torch.cat([freqs, freqs]).sin())

    tm = ref.model.vision_tower.timm_model
    rope = tm.rope
    emb = rope.get_embed()  # [N, 2*head_dim] = cat(sin, cos)
    vsin, vcos = (t.float().contiguous() for t in emb.chunk(2, -1))
    head_dim = tm.blocks[0].attn.head_dim if hasattr(tm.blocks[0].attn, "head_dim") else vsin.shape[-1]
    H, W = tm.patch_embed.grid_size
    assert vsin.shape == (H * W, head_dim), vsin.shape
    assert rope.grid_indexing == "xy" and not rope.rotate_half and not rope.in_pixels
    assert not getattr(tm.blocks[0].attn, "rotate_half", False)
    # Layout check: patch p = row*W + col; the first head_dim/2 channels hold column (x) angles,
    # the second half row (y) angles; each frequency is repeated for an adjacent (even, odd) pair.
    bands = rope.bands.float()
    ref_h, ref_w = rope.ref_feat_shape
    p = torch.arange(H * W)
    xpos = (p % W).float() + rope.grid_offset
    ypos = (p // W).float() + rope.grid_offset
    xpos, ypos = xpos / W * ref_w, ypos / H * ref_h
    ang = torch.cat([xpos[:, None] * bands, ypos[:, None] * bands], -1).repeat_interleave(2, -1)
    assert torch.allclose(vsin, ang.sin(), atol=1e-6) and torch.allclose(vcos, ang.cos(), atol=1e-6)
    # ... and that is what the attention applies: pairs (2j, 2j+1) rotate together.
    from timm.layers.pos_embed_sincos import apply_rot_embed_cat
    q = torch.randn((1, 2, H * W, head_dim), generator=torch.Generator().manual_seed(5))
    want = torch.empty_like(q)
    want[..., 0::2] = q[..., 0::2] * vcos[:, 0::2] - q[..., 1::2] * vsin[:, 0::2]
    want[..., 1::2] = q[..., 1::2] * vcos[:, 1::2] + q[..., 0::2] * vsin[:, 1::2]
    assert torch.allclose(apply_rot_embed_cat(q, emb, half=False), want, atol=1e-6)

    tensors = {
        "text_inv_freq": inv_freq,
        "text_cos_3000": cos,
        "text_sin_3000": sin,
        "vision_rope_sin": vsin,
        "vision_rope_cos": vcos,
        "vision_rope_bands": bands.contiguous(),
    }
    meta = {
        "variant": name, "case": "rope", "text_position": TEXT_ROPE_POSITION,
        "text_rope_type": ref.config.text_config.rope_parameters["rope_type"],
        "vision_grid": f"{H}x{W}", "vision_ref_feat_shape": f"{ref_h}x{ref_w}",
        "vision_grid_offset": float(rope.grid_offset), "vision_layout": "interleaved; [x(col) | y(row)] halves",
    }
    write_case(path, tensors, {}, meta)


def check_scatter(model, input_ids, pixel_values, pixel_values_videos, logits):
    """Rebuild inputs_embeds by hand (image rows <- image features in order, video rows <- video
    features in order) and check the language model reproduces the logits."""
    with torch.no_grad():
        emb = model.get_input_embeddings()(input_ids).clone()
        flat = emb.view(-1, emb.shape[-1])
        ids = input_ids.reshape(-1)
        cfg = model.config
        for pv, tok in ((pixel_values, cfg.image_token_id), (pixel_values_videos, cfg.video_token_id)):
            if pv is None:
                continue
            feats = model.model.get_image_features(pixel_values=pv, return_dict=True).pooler_output
            rows = (ids == tok).nonzero().flatten()
            flat[rows] = feats.reshape(-1, feats.shape[-1])
        out = model(inputs_embeds=emb).logits.float()
    assert torch.allclose(out, logits, atol=1e-4, rtol=1e-5)


def write_video_case(name, spec, ref, path, tokenizer, B, tpt):
    gen = torch.Generator().manual_seed(spec["seed"] + 17)
    text = "Watch " + "<|video|>" * (2 * tpt) + " then " + image_tokens(tpt) + " and describe."
    ids = tokenizer(text, return_tensors="pt").input_ids
    pos_v = (ids[0] == B + 3).nonzero().flatten()
    pos_i = (ids[0] == B + 2).nonzero().flatten()
    assert len(pos_v) == 2 * tpt and len(pos_i) == tpt and pos_v.max() < pos_i.min()
    pv = random_pixels(gen, 1, 56)
    pvv = random_pixels(gen, 2, 56)
    outs, m = reference(ref, ids, pv, pixel_values_videos=pvv)
    assert m > MIN_MARGIN, f"{name}/image_video: greedy margin {m} too small; change the seed"
    with torch.no_grad():
        vid = ref.model.get_image_features(pixel_values=pvv, return_dict=True).pooler_output.float()
    assert vid.shape == (2, tpt, ref.config.text_config.hidden_size), vid.shape
    check_scatter(ref, ids, pv, pvv, outs["logits"])
    del outs["vision_hidden"]
    outs["video_features"] = vid.contiguous()
    meta = {"variant": name, "case": "image_video", "max_new_tokens": MAX_NEW_TOKENS, "seq_len": ids.shape[1],
            "image_token_id": B + 2, "video_token_id": B + 3, "bos_token_id": B, "num_tiles": 1,
            "num_frames": 2, "prompt": text}
    write_case(path, {"input_ids": ids, "pixel_values": pv, "pixel_values_videos": pvv}, outs, meta)
    print(f"  image_video: L={ids.shape[1]} min margin {m:.4f} tokens {outs['greedy_tokens'].tolist()}", flush=True)
    return m


@torch.no_grad()
def write_batch_case(name, spec, ref, path, B, tpt):
    gen = torch.Generator().manual_seed(spec["seed"] + 19)
    L = 20
    rows = []
    for start in (3, 11):  # the image tokens sit at different positions in the two rows
        r = torch.randint(0, B, (L,), generator=gen, dtype=torch.int64)
        r[0] = B
        r[start:start + tpt] = B + 2
        rows.append(r)
    ids = torch.stack(rows)
    pv = random_pixels(gen, 2, 56).reshape(2, 1, 3, 56, 56)
    logits = ref(input_ids=ids, pixel_values=pv).logits.float()
    assert logits.shape == (2, L, ref.config.text_config.vocab_size) and torch.isfinite(logits).all()
    for b in range(2):
        single = ref(input_ids=ids[b:b + 1], pixel_values=pv[b:b + 1]).logits.float()
        assert torch.allclose(single, logits[b:b + 1], atol=1e-4, rtol=1e-5), b
    check_scatter(ref, ids, pv, None, logits)
    feats = ref.model.get_image_features(pixel_values=pv, return_dict=True).pooler_output.float()
    meta = {"variant": name, "case": "batch2", "batch": 2, "seq_len": L, "num_tiles": 1,
            "image_token_id": B + 2, "bos_token_id": B}
    write_case(path, {"input_ids": ids, "pixel_values": pv}, {"image_features": feats.contiguous(), "logits": logits.contiguous()}, meta)
    print(f"  batch2: [2, {L}] image rows {[(ids[b] == B + 2).nonzero().flatten().tolist() for b in range(2)]}",
          flush=True)


def _half_patterns(exp_mask, mant_mask, specials, n=4096):
    """n sorted 16-bit patterns without NaNs: every 16th pattern, the specials, then evenly spaced
    patterns = 8 (mod 16) to fill up."""
    def is_nan(v):
        return (v & exp_mask) == exp_mask and (v & mant_mask) != 0

    chosen = {v for v in range(0, 65536, 16) if not is_nan(v)} | set(specials)
    assert not any(is_nan(v) for v in chosen)
    fill = [v for v in range(8, 65536, 16) if not is_nan(v) and v not in chosen]
    need = n - len(chosen)
    assert 0 <= need <= len(fill)
    chosen |= {fill[i * len(fill) // need] for i in range(need)}
    assert len(chosen) == n
    return np.array(sorted(chosen), dtype=np.uint16)


def write_float_values(path):
    """F16 and BF16 values (normals, subnormals, +-0, +-inf, extremes; no NaN) with torch's .float()."""
    h_specials = [0x0000, 0x8000, 0x7C00, 0xFC00,          # +-0, +-inf
                  0x0001, 0x8001, 0x03FF, 0x83FF,          # min / max subnormal
                  0x0400, 0x8400, 0x7BFF, 0xFBFF,          # min / max normal
                  0x3C00, 0xBC00, 0x3C01, 0x3BFF, 0x3555]  # 1, -1, 1+ulp, 1-ulp/2, ~1/3
    b_specials = [0x0000, 0x8000, 0x7F80, 0xFF80,
                  0x0001, 0x8001, 0x007F, 0x807F,
                  0x0080, 0x8080, 0x7F7F, 0xFF7F,
                  0x3F80, 0xBF80, 0x3F81, 0x3F7F, 0x3EAB]
    hb = _half_patterns(0x7C00, 0x03FF, h_specials)
    bb = _half_patterns(0x7F80, 0x007F, b_specials)
    h = torch.from_numpy(hb.view(np.int16).copy()).view(torch.float16)
    b = torch.from_numpy(bb.view(np.int16).copy()).view(torch.bfloat16)
    h32, b32 = h.float(), b.float()
    assert not torch.isnan(h32).any() and not torch.isnan(b32).any()
    assert np.array_equal(h32.numpy(), hb.view(np.float16).astype(np.float32))
    assert np.array_equal(b32.numpy().view(np.uint32), bb.astype(np.uint32) << 16)
    assert int((h32 == 0).sum()) == 2 and int(torch.isinf(h32).sum()) == 2
    assert int((b32 == 0).sum()) == 2 and int(torch.isinf(b32).sum()) == 2
    write_case(path, {"h": h, "b": b}, {"h_as_f32": h32, "b_as_f32": b32},
               {"case": "f16_values", "count": len(hb)})


def write_tokenizer_cases(processor, tokenizer, B, path):
    strings = [
        "Hello world",
        "The quick brown fox jumps over the lazy dog.",
        "  leading and trailing spaces  ",
        "tabs\tand\nnewlines\n\n  mixed   whitespace runs",
        "Numbers: 7 42 123 4567 3.14159 1000000",
        "Unicode: café, naïve, Straße, 日本語, Привет, emoji 🙂👍",
        "It's, we'll, they've, I'M, you'D",
        "Look at <|image|> and tell me what you see.",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
        "",
        "a",
        "!!!???...",
    ]
    cases = []
    for s in strings:
        ids = tokenizer(s, add_special_tokens=True).input_ids
        cases.append({"text": s, "ids": ids, "decoded": tokenizer.decode(ids, skip_special_tokens=False)})
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "Describe the bar plot in the image."}, {"type": "image"}]}]
    rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    chat_ids = tokenizer(rendered, add_special_tokens=False).input_ids
    data = {
        "description": "Ids from the trained fixture tokenizer (models/*/tokenizer.json). 'ids' use "
                       "add_special_tokens=True (BOS prepended). The chat example is rendered with "
                       "add_generation_prompt=True and tokenized with add_special_tokens=False.",
        "base_vocab_size": B,
        "vocab_size": B + 256,
        "special_ids": {t: B + i for i, t in enumerate(SPECIAL_TOKENS[:10])},
        "cases": cases,
        "chat": {"messages": messages, "add_generation_prompt": True, "rendered": rendered, "ids": chat_ids},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def check_saved_tokenizer(model_dir, cases_json):
    """The tokenizer reloaded from a checkpoint folder reproduces tokenizer_cases.json."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    data = json.loads(Path(cases_json).read_text(encoding="utf-8"))
    for c in data["cases"]:
        assert tok(c["text"], add_special_tokens=True).input_ids == c["ids"], c["text"]
    assert tok(data["chat"]["rendered"], add_special_tokens=False).input_ids == data["chat"]["ids"]


def write_sums(root):
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.parts[len(root.parts)] in ("models", "cases"))
    lines = []
    for p in files:
        lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}")
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return files


# --------------------------------------------------------------------------------------------
# Full-size PLM-1B-shaped checkpoint
# --------------------------------------------------------------------------------------------


def make_plm1b(out_dir):
    out_dir = Path(out_dir)
    t0 = time.time()
    tokenizer, B = build_tokenizer(pad_base_to=128000)
    assert B == 128000
    processor = build_processor(tokenizer, tile_size=448, max_num_tiles=36)
    model = build_model(PLM1B, B)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[plm1b] built + init in {time.time() - t0:.1f}s, parameters {n_params:,}", flush=True)
    t0 = time.time()
    save_checkpoint(model, processor, out_dir, torch.bfloat16)
    del model
    print(f"[plm1b] saved in {time.time() - t0:.1f}s", flush=True)

    st_files = sorted(out_dir.glob("*.safetensors"))
    n_tensors, n_saved = 0, 0
    for f in st_files:
        with safe_open(str(f), "pt") as h:
            for k in h.keys():
                n_tensors += 1
                n_saved += math.prod(h.get_slice(k).get_shape())
    size = sum(f.stat().st_size for f in st_files)

    t0 = time.time()
    ref = load_fp32(out_dir)
    print(f"[plm1b] reloaded fp32 in {time.time() - t0:.1f}s", flush=True)

    g = torch.Generator().manual_seed(PLM1B["seed"] + 7)

    def rand_text(n):
        return torch.randint(0, 128000, (n,), generator=g).tolist()

    # Chat-shaped prompt: bos, system turn, user turn with 256 image tokens, assistant header.
    ids = ([128000, 128006] + rand_text(1) + [128007] + rand_text(1) + rand_text(47) + [128009]
           + [128006] + rand_text(1) + [128007] + rand_text(1) + [128002] * 256 + rand_text(12)
           + [128009, 128006] + rand_text(1) + [128007] + rand_text(1))
    input_ids = torch.tensor([ids], dtype=torch.int64)
    pixel_values = random_pixels(g, 1, 448)

    with torch.no_grad():
        t0 = time.time()
        img = ref.model.get_image_features(pixel_values=pixel_values, return_dict=True)
        t_vis = time.time() - t0
        t0 = time.time()
        logits = ref(input_ids=input_ids, pixel_values=pixel_values).logits.float()
        t_fwd = time.time() - t0
    tokens, margins, _ = greedy(ref, input_ids, pixel_values, MAX_NEW_TOKENS)
    outs = {
        "logits": logits,
        "vision_hidden": img.last_hidden_state.float(),
        "image_features": img.pooler_output.float(),
        "greedy_tokens": torch.tensor(tokens, dtype=torch.int64),
        "greedy_margins": torch.tensor(margins, dtype=torch.float32),
    }
    write_case(out_dir / "case_tile1.safetensors", {"input_ids": input_ids, "pixel_values": pixel_values}, outs,
               {"variant": "plm1b-random", "case": "tile1", "max_new_tokens": MAX_NEW_TOKENS,
                "seq_len": input_ids.shape[1], "num_tiles": 1})
    report = {
        "parameters": n_params,
        "safetensors_files": [f.name for f in st_files],
        "tensors_saved": n_tensors,
        "elements_saved": n_saved,
        "bytes": size,
        "seq_len": input_ids.shape[1],
        "vision_forward_s": round(t_vis, 2),
        "full_forward_fp32_s": round(t_fwd, 2),
        "greedy_tokens": tokens,
        "min_margin": min(margins),
    }
    (out_dir / "plm1b_report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(FIXTURES), help="output root (default: this folder)")
    ap.add_argument("--plm1b", metavar="OUTDIR", help="write the full-size PLM-1B-shaped checkpoint instead")
    args = ap.parse_args()
    if args.plm1b:
        make_plm1b(args.plm1b)
        return
    summary = make_tiny(args.out)
    files = write_sums(args.out)
    total = sum(p.stat().st_size for p in files)
    print(json.dumps(summary, indent=1))
    print(f"{len(files)} files, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
