#!/usr/bin/env python3
"""Compare `plmq forward` logits with transformers' fp32 reference (make_real_model.py's case).

    python Examples/real-model/compare_logits.py REFERENCE.safetensors PLMQ_OUTPUT.safetensors [--max-delta 1e-3]

Prints max |Δ| (and the logit scale) and the mean KL(reference ‖ plmq) per position; exits 1 when
max |Δ| is above --max-delta.
"""
import argparse
import sys

import torch
from safetensors.torch import load_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference")
    ap.add_argument("output")
    ap.add_argument("--max-delta", type=float, default=1e-3)
    args = ap.parse_args()
    want = load_file(args.reference)["logits"].double()
    got = load_file(args.output)["logits"].double().reshape(want.shape)
    delta = (got - want).abs().max().item()
    lp, lq = want.log_softmax(-1), got.log_softmax(-1)
    kl = (lp.exp() * (lp - lq)).sum(-1).mean().item()
    print(f"logits {list(want.shape)}: max |plmq - transformers| {delta:.3g} at logit scale {want.abs().max().item():.1f}; mean KL {kl:.3g}")
    sys.exit(0 if delta <= args.max_delta else 1)


if __name__ == "__main__":
    main()
