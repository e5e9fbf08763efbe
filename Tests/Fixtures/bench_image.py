#!/usr/bin/env python3
"""Benchmark inputs and the transformers side of the image benchmark.

Writes a 12-megapixel JPEG (4000×3000 → 36+1 tiles of 448) and a 640×480 PNG into DIR (default
/tmp/plmq-bench), then times transformers 5.24 on them: load_image (PIL decode, exif_transpose,
convert) and PerceptionLMImageProcessor (defaults: 448, 36 tiles), median of 5 runs each, with
torch on 1 and on 2 threads. Compare with `plmq preprocess MODEL --image DIR/photo12mp.jpg --bench 5 --processor-defaults`
(and the same for DIR/photo640.png; `--threads 2` for two threads).

Run: HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/bench_image.py [DIR]
"""
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
import torch
from PIL import Image
from skimage import data as skdata
from transformers.image_utils import load_image
from transformers.models.perception_lm.image_processing_perception_lm import PerceptionLMImageProcessor


def make_inputs(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    big, small = out / "photo12mp.jpg", out / "photo640.png"
    if not big.exists():
        img = Image.fromarray(skdata.astronaut()).resize((4000, 3000), Image.BICUBIC)
        noise = np.random.default_rng(0).integers(-6, 7, (3000, 4000, 3))
        img = Image.fromarray(np.clip(np.asarray(img, np.int16) + noise, 0, 255).astype(np.uint8))
        img.save(big, quality=90)
    if not small.exists():
        Image.fromarray(skdata.coffee()).resize((640, 480), Image.BICUBIC).save(small)
    return [big, small]


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/plmq-bench")
    files = make_inputs(out)
    processor = PerceptionLMImageProcessor()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for f in files:
            decode, prep = [], []
            for _ in range(5):
                t0 = time.perf_counter()
                img = load_image(str(f))
                t1 = time.perf_counter()
                pv = processor(images=img, return_tensors="pt")["pixel_values"]
                t2 = time.perf_counter()
                decode.append(t1 - t0)
                prep.append(t2 - t1)
            d, p = statistics.median(decode), statistics.median(prep)
            print(f"transformers {f.name} {img.width}x{img.height} -> {pv.shape[1]} tiles, {threads} thread(s): "
                  f"decode {d * 1e3:.1f} ms, preprocess {p * 1e3:.1f} ms, total {(d + p) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
