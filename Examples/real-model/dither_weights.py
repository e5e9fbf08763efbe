#!/usr/bin/env python3
"""Write a copy of the real-model checkpoint whose decoder matrices are off their Q4_1 grid.

SmolLM2's published weights were Q4_1: every aligned block of 32 holds at most 16 values
s*q + m, so group-32 asymmetric int4 reproduces them almost exactly and flatters every such
scheme. This adds to each decoder weight uniform noise of +-half its block's Q4_1 step (the step
estimated as (max - min) / 15 over the block), which spreads each block's values continuously, as a
trained bf16 matrix's are. The result is another working language model: measure int4 against
*its own* fp32 outputs (convert from it; `plmq eval` takes the reference from the .plm).

    python dither_weights.py /work/smol-plm /tmp/smol-dither --seed 0
"""
import argparse
import re

import torch

from checkpoint_copy import rewrite_weights

DECODER = re.compile(r"^model\.language_model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    g = torch.Generator().manual_seed(a.seed)
    changed = 0

    def dither(k, t):
        nonlocal changed
        if DECODER.match(k) and t.shape[-1] % 32 == 0:
            w = t.float().reshape(-1, 32)
            step = (w.max(1, keepdim=True).values - w.min(1, keepdim=True).values) / 15
            noise = (torch.rand(w.shape, generator=g) - 0.5) * step
            t = (w + noise).reshape(t.shape).to(t.dtype)
            changed += 1
        return t

    rewrite_weights(a.source, a.out, dither)
    print(f"{changed} decoder matrices dithered into {a.out}")


if __name__ == "__main__":
    main()
