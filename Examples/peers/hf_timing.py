#!/usr/bin/env python3
"""Times transformers' PerceptionLM on CPU: the vision tower and text prefill, for compare_peers.sh.

    HF_HUB_OFFLINE=1 python Examples/peers/hf_timing.py /work/plm1b --threads 1,2 --tiles 1,4 \
        --prompts 512,4096 --dtypes bfloat16,float32 --runs 3

Measures, for each dtype (the model loaded with from_pretrained(dtype=...)) and thread count
(torch.set_num_threads):
  * vision: `model.model.get_image_features` (vision tower + projector, as plmq's `encode`) on N
    448-pixel tiles of fixed pseudo-random pixels; seconds per call and per tile;
  * prefill: one forward over N text tokens (fixed pseudo-random ids, no image), logits of the last
    position only (as `plmq bench --prompt N` and `llama-bench -p N`); tokens per second.
Each figure is the median of --runs timed runs after one untimed warm-up (the warm-up is skipped for
a measurement whose first run already took more than --max-seconds, and such a measurement is timed
once: bf16 matmuls on a CPU without AVX512-BF16 are slow). A measurement whose estimate from the
previous, smaller one (for prefill, first from a 64-token probe) exceeds --skip-seconds is not run and
is reported with its estimate.
Prints one JSON object (progress goes to stderr).
"""
import argparse
import json
import statistics
import sys
import time

import torch


def log(message):
    print(message, file=sys.stderr, flush=True)


def measure(body, runs, max_seconds):
    """Median seconds of body(); one warm-up unless the first call is already long."""
    start = time.perf_counter()
    body()
    first = time.perf_counter() - start
    if first > max_seconds:
        return {"median": first, "min": first, "max": first, "runs": 1, "warm_up": False}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        body()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "runs": runs, "warm_up": True}


def token_ids(n, vocab, skip):
    """The same id rule as plmq bench: (i * 7919 + 13) mod vocab, stepping over image/video ids."""
    ids = []
    for i in range(n):
        t = (i * 7919 + 13) % vocab
        while t in skip:
            t = (t + 1) % vocab
        ids.append(t)
    return torch.tensor([ids], dtype=torch.long)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--tiles", default="1,4", help="vision tile counts (empty: no vision)")
    parser.add_argument("--prompts", default="512,4096", help="prefill lengths (empty: no prefill)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="a first run longer than this is the only run")
    parser.add_argument("--skip-seconds", type=float, default=600.0, help="skip a measurement estimated to take longer")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    from transformers import PerceptionLMForConditionalGeneration
    import transformers

    threads = [int(t) for t in args.threads.split(",") if t]
    tiles = [int(t) for t in args.tiles.split(",") if t]
    prompts = [int(p) for p in args.prompts.split(",") if p]
    result = {"checkpoint": args.checkpoint, "torch": torch.__version__, "transformers": transformers.__version__,
              "runs": args.runs, "measurements": []}
    for dtype_name in [d for d in args.dtypes.split(",") if d]:
        dtype = getattr(torch, dtype_name)
        model = PerceptionLMForConditionalGeneration.from_pretrained(args.checkpoint, dtype=dtype).eval()
        config = model.config
        side = 448
        if hasattr(config.vision_config, "model_args"):
            size = config.vision_config.model_args.get("img_size", [448, 448])
            side = int(size[0] if isinstance(size, (list, tuple)) else size)
        vocab = config.text_config.vocab_size
        skip = {config.image_token_id, getattr(config, "video_token_id", -1)}
        for t in threads:
            torch.set_num_threads(t)
            previous = None  # (count, seconds) of the last vision measurement, for the estimate
            for n in tiles:
                g = torch.Generator().manual_seed(0)
                pixels = (torch.rand((1, n, 3, side, side), generator=g) * 2 - 1).to(dtype)
                row = {"kind": "vision", "dtype": dtype_name, "threads": t, "tiles": n}
                estimate = previous[1] * n / previous[0] if previous else None
                if estimate is not None and estimate > args.skip_seconds:
                    row.update({"skipped": True, "estimated_seconds": estimate})
                else:
                    with torch.inference_mode():
                        s = measure(lambda: model.model.get_image_features(pixel_values=pixels), args.runs, args.max_seconds)
                    row.update({"seconds": s, "seconds_per_tile": s["median"] / n})
                    previous = (n, s["median"])
                log(json.dumps(row))
                result["measurements"].append(row)
            previous = None
            if prompts:
                # A short probe (also a warm-up) gives the first estimate for --skip-seconds.
                probe = token_ids(64, vocab, skip)
                start = time.perf_counter()
                with torch.inference_mode():
                    model(input_ids=probe, logits_to_keep=1, use_cache=True)
                previous = (64, time.perf_counter() - start)
            for n in prompts:
                ids = token_ids(n, vocab, skip)
                row = {"kind": "prefill", "dtype": dtype_name, "threads": t, "tokens": n}
                # attention grows faster than linearly; the matmuls dominate up to a few thousand tokens
                estimate = previous[1] * (n / previous[0]) * 1.3 if previous else None
                if estimate is not None and estimate > args.skip_seconds:
                    row.update({"skipped": True, "estimated_seconds": estimate})
                else:
                    with torch.inference_mode():
                        s = measure(lambda: model(input_ids=ids, logits_to_keep=1, use_cache=True), args.runs, args.max_seconds)
                    row.update({"seconds": s, "tokens_per_s": n / s["median"]})
                    previous = (n, s["median"])
                log(json.dumps(row))
                result["measurements"].append(row)
        del model
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
