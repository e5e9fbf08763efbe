"""The transformers side of the runner benchmark: time to first token and decode speed of
PerceptionLMForConditionalGeneration.generate on CPU for one image and a short question, in bf16
and fp32, at 1 and 2 threads, with the processor's default tiling and with max_num_tiles=1.
Compare with `plmq run MODEL.plm --image IMAGE --prompt PROMPT --stats [--max-tiles 1] --threads T`
run beside it (the same machine, one after the other).

    HF_HUB_OFFLINE=1 python Tests/Fixtures/bench_runner.py /work/plm1b IMAGE "What is in this image?"

Time to first token = generate(max_new_tokens=1); decode = (generate(N) − generate(1)) / (N − 1),
greedy with eos ignored (min_new_tokens=N), median of 3. Environment: BENCH_TOKENS (32; 1 times the
first token only), BENCH_REPEATS
(3), BENCH_TILES (both | default | one), BENCH_THREADS (1,2), BENCH_DTYPES (bfloat16,float32).
"""
import json
import statistics
import sys
import time

import torch
from transformers import PerceptionLMForConditionalGeneration, PerceptionLMProcessor
from transformers.image_utils import load_image

import os
N = int(os.environ.get("BENCH_TOKENS", "32"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
TILES = {"both": [None, 1], "default": [None]}.get(os.environ.get("BENCH_TILES", "both"), [1])
THREADS = [int(t) for t in os.environ.get("BENCH_THREADS", "1,2").split(",")]
DTYPES = [getattr(torch, d) for d in os.environ.get("BENCH_DTYPES", "bfloat16,float32").split(",")]


def timed(model, enc, n):
    t = time.perf_counter()
    with torch.no_grad():
        model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return time.perf_counter() - t


def main():
    path, image, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
    processor = PerceptionLMProcessor.from_pretrained(path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    img = load_image(image)
    rows = []
    for dtype in DTYPES:
        model = PerceptionLMForConditionalGeneration.from_pretrained(path, dtype=dtype).eval()
        for tiles in TILES:
            kwargs = {} if tiles is None else {"max_num_tiles": tiles}
            enc = processor(text=text, images=[img], return_tensors="pt", add_special_tokens=False, **kwargs)
            enc = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in enc.items()}
            for threads in THREADS:
                torch.set_num_threads(threads)
                first = statistics.median(timed(model, enc, 1) for _ in range(REPEATS))
                # BENCH_TOKENS=1 times the first token only (a 36-tile prompt takes minutes per run).
                full = statistics.median(timed(model, enc, N) for _ in range(REPEATS)) if N > 1 else None
                rows.append({"dtype": str(dtype).split(".")[-1], "tiles": int(enc["pixel_values"].shape[1]),
                             "prompt_tokens": int(enc["input_ids"].shape[1]), "threads": threads,
                             "time_to_first_token_s": round(first, 3),
                             "decode_tokens_per_s": round((N - 1) / (full - first), 2) if full else None})
                print(json.dumps(rows[-1]), flush=True)
        del model


if __name__ == "__main__":
    main()
