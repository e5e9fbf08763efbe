#!/usr/bin/env python3
"""Measures what storing the reference's next-token distributions costs, and how exact KL stays,
for PLMEval's reference cache (Formats/REFCACHE.md) against llama.cpp's --kl-divergence-base file.

Synthetic language-model-like logits over the Llama 3 vocabulary (128256): a Gaussian bulk
(std 2) plus 32 candidate tokens raised by U(2, 18) + 2 N(0, 1) at each position, so positions
range from confident to uncertain. The "quantized" logits add Gaussian noise (std 0.02, about int8,
and 0.2, about int4). Compared, per position:
  exact     KL over tokens with reference log-prob > -16, fp32 log-probs (PLMEval, its cache);
  llama16   the same from llama.cpp's 16-bit code of the reference log-probs
            (scale = (max - max(min, max - 16)) / 65535, 4-byte scale and minimum per position);
  top-k     the top k reference tokens exactly, the rest as one bucket (P_tail log(P_tail/Q_tail)).
Prints the support sizes, bytes per position and the KL errors. Not a fixture generator: nothing
is written. Usage: OMP_NUM_THREADS=2 python Tests/Fixtures/measure_kl_storage.py
"""
import numpy as np

V = 128256
POSITIONS = 400
BATCH = 25
rng = np.random.default_rng(7)


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))


def llama16(ref):
    """llama.cpp's stored reference log-probs, reconstructed."""
    mx = ref.max(-1, keepdims=True)
    mn = np.maximum(ref.min(-1, keepdims=True), mx - 16)
    lse = np.log(np.exp(ref - mx).sum(-1, keepdims=True))
    scale = (mx - mn) / 65535
    code = np.where(ref > mn, np.floor((ref - mn) / scale + 0.5), 0)
    return scale * code + (mn - mx - lse)


rows = {"support": [], "entropy": [], "p_top": []}
errors = {s: {"exact": [], "llama16": [], 32: [], 256: [], 1024: []} for s in (0.02, 0.2)}
for start in range(0, POSITIONS, BATCH):
    ref = rng.normal(0, 2, size=(BATCH, V))
    for b in range(BATCH):
        idx = rng.choice(V, 32, replace=False)
        ref[b, idx] += rng.uniform(2, 18) + 2 * rng.normal(size=32)
    lp = log_softmax(ref)
    p = np.exp(lp)
    mask = lp > -16
    rows["support"] += mask.sum(-1).tolist()
    rows["entropy"] += (-(p * lp).sum(-1)).tolist()
    rows["p_top"] += p.max(-1).tolist()
    lp16 = llama16(ref)
    order = np.argsort(-lp, axis=-1)
    for s in errors:
        lq = log_softmax(ref + rng.normal(0, s, size=ref.shape))
        exact = np.where(mask, p * (lp - lq), 0).sum(-1)
        errors[s]["exact"] += exact.tolist()
        errors[s]["llama16"] += np.where(lp16 > -16, np.exp(lp16) * (lp16 - lq), 0).sum(-1).tolist()
        for k in (32, 256, 1024):
            top = order[:, :k]
            pk, lpk, lqk = np.take_along_axis(p, top, -1), np.take_along_axis(lp, top, -1), np.take_along_axis(lq, top, -1)
            pt = np.clip(1 - pk.sum(-1), 1e-300, None)
            qt = np.clip(1 - np.exp(lqk).sum(-1), 1e-300, None)
            errors[s][k] += ((pk * (lpk - lqk)).sum(-1) + pt * np.log(pt / qt)).tolist()

support = np.array(rows["support"])
ours = 20 + np.minimum(8 * support, 4 * V)
llama = 2 * (2 * ((V + 1) // 2) + 4)
print(f"positions {POSITIONS}, vocabulary {V}")
print("entropy (nats) p10/p50/p90: %.2f %.2f %.2f" % tuple(np.percentile(rows["entropy"], [10, 50, 90])))
print("top-token probability p10/p50/p90: %.3f %.3f %.3f" % tuple(np.percentile(rows["p_top"], [10, 50, 90])))
print("support (log p > -16) p10/p50/p90/max: %d %d %d %d" % (*np.percentile(support, [10, 50, 90]).astype(int), support.max()))
print(f"bytes per position: llama.cpp {llama}; plmq cache mean {ours.mean():.0f}, median {np.median(ours):.0f}, max {ours.max()}"
      f" ({llama / ours.mean():.1f}x smaller on average)")
for s, e in errors.items():
    exact = np.array(e["exact"])
    print(f"noise {s}: mean KL exact {exact.mean():.6g}")
    for name in ("llama16", 32, 256, 1024):
        other = np.array(e[name])
        print(f"  {str(name):>8}: mean KL {other.mean():.6g} (relative error of the mean {abs(other.mean() / exact.mean() - 1):.2e}),"
              f" per-token |error| median {np.median(np.abs(other - exact)):.2e} max {np.abs(other - exact).max():.2e},"
              f" min KL {other.min():.2e}")
