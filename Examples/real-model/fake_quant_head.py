#!/usr/bin/env python3
"""Fake-quantize the tied embedding/head of the real-model checkpoint, to measure head types plmq lacks.

Writes a copy of a checkpoint folder (side files symlinked) whose token embedding holds the values
a candidate head type would reconstruct, stored as f32 so nothing rounds them again. Convert it
with ``--keep 'embed_tokens=exact'`` (the head then stays exactly these values) and evaluate it with
``--reference ORIGINAL`` (KL against the unmodified fp32 model):

    python fake_quant_head.py /work/smol-plm /tmp/head-q6g32 --bits 6 --group 32
    plmq convert /tmp/head-q6g32 /tmp/q6g32.plm --bits 4 --keep 'embed_tokens=exact'
    plmq eval /tmp/q6g32.plm --reference /work/smol-plm --text heldout.txt --ctx 512

Types: symmetric ``--bits B`` levels -2^(B-1) .. 2^(B-1)-1 per group of ``--group`` columns with
one f16 scale (B + 16/group bits per weight). The scale is searched as plmq's int4-sym search does
(21 candidate inverse scales around the absmax one mapping the largest-magnitude weight to the most
negative level, least-squares scale for each, both f16 neighbours of the winner and of absmax, best
squared error kept). ``--offset K`` starts the groups K columns into each row (the first group is K
wide): on SmolLM2, whose embedding came from Q8_0 (every aligned block of 32 lies exactly on
int8-sym-g32's grid), ``--bits 8 --offset 16`` gives int8 the error it would have on weights that
were never on its grid.

It prints the head's relative RMSE ||W - W^|| / ||W||.
"""
import argparse

import numpy as np
import torch

from checkpoint_copy import rewrite_weights

EMBED = "model.language_model.embed_tokens.weight"


def f16_neighbours(s):
    """The f16 values just below and above each s (float64 in, float64 out, shape (2, n))."""
    h = s.astype(np.float16)
    hf = h.astype(np.float64)
    up = np.nextafter(h, np.float16(np.inf)).astype(np.float64)
    down = np.nextafter(h, np.float16(-np.inf)).astype(np.float64)
    lo = np.where(hf > s, down, hf)
    hi = np.where(hf > s, hf, np.where(hf == s, hf, up))
    return np.stack([lo, hi])


def fake_symmetric(x, bits):
    """x: (groups, n) float64 -> reconstructed values on the searched grid."""
    qlo, qhi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    idx = np.abs(x).argmax(1)
    vmax = x[np.arange(len(x)), idx][:, None]
    safe = np.where(vmax == 0, 1.0, vmax)
    best_sse = np.full(len(x), np.inf)
    best_s = np.zeros(len(x))
    for step in range(-20, 21):
        inv = (qlo + 0.1 * step) / safe
        q = np.clip(np.round(inv * x), qlo, qhi)
        qq, qx = (q * q).sum(1), (q * x).sum(1)
        s = np.where(qq > 0, qx / np.where(qq > 0, qq, 1), 0)
        sse = (x * x).sum(1) - s * qx
        better = sse < best_sse
        best_sse, best_s = np.where(better, sse, best_sse), np.where(better, s, best_s)
    cands = np.concatenate([f16_neighbours(best_s), f16_neighbours(vmax[:, 0] / qlo)])
    best_err, out = np.full(len(x), np.inf), np.zeros_like(x)
    for s in cands:
        sc = s[:, None]
        inv = np.where(sc == 0, 0, 1 / np.where(sc == 0, 1, sc))
        y = sc * np.clip(np.round(x * inv), qlo, qhi)
        err = ((y - x) ** 2).sum(1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        out[better] = y[better]
    return out


def fake_quantize(w, bits, group, offset):
    rows, cols = w.shape
    out = np.empty_like(w)
    starts = ([0] if offset else []) + list(range(offset, cols, group))
    for a, b in zip(starts, starts[1:] + [cols]):
        out[:, a:b] = fake_symmetric(w[:, a:b], bits)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--bits", type=int, required=True)
    p.add_argument("--group", type=int, default=32)
    p.add_argument("--offset", type=int, default=0)
    a = p.parse_args()

    def head(k, t):
        if k != EMBED:
            return t
        w = t.float().numpy().astype(np.float64)
        y = fake_quantize(w, a.bits, a.group, a.offset)
        rel = np.sqrt(((y - w) ** 2).sum() / (w * w).sum())
        print(f"{EMBED}: {a.bits}-bit sym g{a.group} offset {a.offset}: relative RMSE {rel:.6f}")
        return torch.from_numpy(y.astype(np.float32))

    rewrite_weights(a.source, a.out, head)

if __name__ == "__main__":
    main()
