#!/usr/bin/env python3
"""Converts the text model of a PerceptionLM checkpoint to GGUF (bf16, Q4_0, Q8_0) for llama.cpp.

PerceptionLM's language model is a plain Llama: its tensors are stored under `model.language_model.`
(see Sources/PLMCheckpoint/TensorLayout.swift) and its hyper-parameters under `text_config`. This
script writes that part as an ordinary Hugging Face Llama folder (`model.` prefix, LlamaForCausalLM
config, the checkpoint's tokenizer), runs llama.cpp's own `convert_hf_to_gguf.py` on it (bf16 GGUF,
so llama.cpp decides the layout and metadata exactly as for any Llama) and `llama-quantize` to Q4_0
and Q8_0. The vision tower and projector are dropped: llama.cpp cannot run the PE vision tower.

    python Examples/peers/plm_text_to_gguf.py /work/plm1b /work/peers/gguf/plm1b \
        --llama-cpp /work/peers/llama_cpp_python-0.3.36/vendor/llama.cpp \
        --bin /work/peers/llama.cpp-build/bin

writes plm1b-bf16.gguf, plm1b-q4_0.gguf and plm1b-q8_0.gguf into the output folder (skipping files
that are already there unless --force). llama-bench feeds random tokens, so only the vocabulary size
matters; the script checks that the GGUF's vocabulary and shapes are those of the checkpoint.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

LANGUAGE_PREFIX = "model.language_model."
LM_HEAD = "lm_head.weight"
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]


# Runs convert_hf_to_gguf.py in this interpreter after one change: when llama.cpp does not know the
# tokenizer's pre-tokenizer (it recognises tokenizers by the hash of a test string's ids, and a test
# checkpoint's tokenizer is none of the published ones), the GGUF gets a fixed pre-tokenizer name
# instead of failing. This only affects how text becomes ids; llama-bench feeds ids directly.
CONVERT_WRAPPER = """
import logging, runpy, sys
llama_cpp, convert, fallback = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:0] = [llama_cpp, llama_cpp + '/gguf-py']
from conversion import base
known = base.TextModel.get_vocab_base_pre
def get_vocab_base_pre(self, tokenizer):
    try:
        return known(self, tokenizer)
    except NotImplementedError:
        logging.getLogger('plm_text_to_gguf').warning('unknown pre-tokenizer: writing %r (token ids are unaffected)', fallback)
        return fallback
base.TextModel.get_vocab_base_pre = get_vocab_base_pre
sys.argv = [convert] + sys.argv[4:]
runpy.run_path(convert, run_name='__main__')
"""


def fail(message):
    print(f"plm_text_to_gguf: {message}", file=sys.stderr)
    sys.exit(2)


def llama_config(plm_config):
    """The Llama config.json of the text model: text_config as it is, marked as a causal LM."""
    text = plm_config.get("text_config")
    if not isinstance(text, dict):
        fail("config.json has no text_config object")
    if text.get("model_type", "llama") != "llama":
        fail(f"text_config.model_type is {text.get('model_type')!r}, expected 'llama'")
    config = dict(text)
    config["architectures"] = ["LlamaForCausalLM"]
    config["model_type"] = "llama"
    config["torch_dtype"] = plm_config.get("dtype", text.get("dtype", "bfloat16"))
    config["tie_word_embeddings"] = bool(plm_config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
    return config


def write_hf_llama(checkpoint, folder):
    """Writes folder/{config.json, model.safetensors, tokenizer files}; returns the config."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    plm_config = json.loads((checkpoint / "config.json").read_text())
    config = llama_config(plm_config)
    shards = sorted(checkpoint.glob("*.safetensors"))
    shards = [s for s in shards if s.name.startswith("model")]
    if not shards:
        fail(f"{checkpoint}: no model*.safetensors")
    tensors = {}
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():
                if name.startswith(LANGUAGE_PREFIX):
                    tensors["model." + name[len(LANGUAGE_PREFIX):]] = f.get_tensor(name)
                elif name == LM_HEAD and not config["tie_word_embeddings"]:
                    tensors[LM_HEAD] = f.get_tensor(name)
    embed = tensors.get("model.embed_tokens.weight")
    if embed is None:
        fail(f"{checkpoint}: no {LANGUAGE_PREFIX}embed_tokens.weight")
    if list(embed.shape) != [config["vocab_size"], config["hidden_size"]]:
        fail(f"{checkpoint}: embed_tokens is {list(embed.shape)}, config says [{config['vocab_size']}, {config['hidden_size']}]")
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    for name in TOKENIZER_FILES:
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, folder / name)
    if not (folder / "tokenizer.json").is_file():
        fail(f"{checkpoint}: no tokenizer.json (convert_hf_to_gguf.py needs a tokenizer)")
    return config


def check_gguf(path, config, llama_cpp):
    """The GGUF must have the checkpoint's vocabulary size and layer shapes."""
    sys.path.insert(0, str(llama_cpp / "gguf-py"))
    import gguf

    reader = gguf.GGUFReader(str(path))
    shapes = {t.name: [int(x) for x in reversed(t.shape.tolist())] for t in reader.tensors}
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = len(tokens.data) if tokens is not None else None
    expected = {
        "token_embd.weight": [config["vocab_size"], config["hidden_size"]],
        "blk.0.ffn_gate.weight": [config["intermediate_size"], config["hidden_size"]],
        "blk.0.attn_k.weight": [config["num_key_value_heads"] * config.get("head_dim", config["hidden_size"] // config["num_attention_heads"]), config["hidden_size"]],
    }
    for name, shape in expected.items():
        if shapes.get(name) != shape:
            fail(f"{path}: {name} is {shapes.get(name)}, expected {shape}")
    blocks = sum(1 for n in shapes if n.endswith(".attn_q.weight"))
    if blocks != config["num_hidden_layers"]:
        fail(f"{path}: {blocks} blocks, expected {config['num_hidden_layers']}")
    if vocab != config["vocab_size"]:
        fail(f"{path}: vocabulary of {vocab} tokens, expected {config['vocab_size']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="PerceptionLM checkpoint folder (config.json, model*.safetensors, tokenizer.json)")
    parser.add_argument("out", type=Path, help="output folder; files are named after it")
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source folder (has convert_hf_to_gguf.py)")
    parser.add_argument("--bin", type=Path, required=True, help="folder with llama-quantize")
    parser.add_argument("--types", default="Q4_0,Q8_0", help="llama-quantize types (default Q4_0,Q8_0)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--force", action="store_true", help="rebuild files that exist")
    parser.add_argument("--pre-tokenizer-fallback", default="llama-bpe",
                        help="tokenizer.ggml.pre to write when llama.cpp does not recognise the tokenizer (default llama-bpe)")
    args = parser.parse_args()

    if not (args.checkpoint / "config.json").is_file():
        fail(f"{args.checkpoint}: no config.json")
    convert = args.llama_cpp / "convert_hf_to_gguf.py"
    quantize = args.bin / "llama-quantize"
    if not convert.is_file():
        fail(f"{convert}: not found")
    types = [t for t in args.types.split(",") if t]
    if types and not os.access(quantize, os.X_OK):
        fail(f"{quantize}: not found (run Examples/peers/build_llamacpp.sh)")

    stem = args.out.name
    args.out.mkdir(parents=True, exist_ok=True)
    bf16 = args.out / f"{stem}-bf16.gguf"
    config = llama_config(json.loads((args.checkpoint / "config.json").read_text()))
    if args.force or not bf16.is_file():
        hf = args.out / "hf-llama"
        config = write_hf_llama(args.checkpoint, hf)
        env = dict(os.environ, PYTHONPATH=str(args.llama_cpp / "gguf-py"))
        tmp = bf16.with_suffix(".gguf.tmp")
        subprocess.run([sys.executable, "-c", CONVERT_WRAPPER, str(args.llama_cpp), str(convert), args.pre_tokenizer_fallback,
                        str(hf), "--outtype", "bf16", "--outfile", str(tmp)], check=True, env=env)
        tmp.replace(bf16)
        shutil.rmtree(hf)  # a second copy of the text weights; the GGUF has them now
    check_gguf(bf16, config, args.llama_cpp)
    for kind in types:
        out = args.out / f"{stem}-{kind.lower()}.gguf"
        if args.force or not out.is_file():
            tmp = out.with_suffix(".gguf.tmp")
            subprocess.run([str(quantize), str(bf16), str(tmp), kind, str(args.threads)], check=True)
            tmp.replace(out)
        check_gguf(out, config, args.llama_cpp)
        print(f"plm_text_to_gguf: {out} ({out.stat().st_size / 1e9:.2f} GB)")
    print(f"plm_text_to_gguf: {bf16} ({bf16.stat().st_size / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()
