#!/usr/bin/env python3
"""Fixtures for PLMEval's metrics, computed independently with numpy (float64).

Writes ``Tests/Fixtures/eval/metrics.json``: random logits of a few shapes (reference and a
"quantized" copy = reference + Gaussian noise), stored as base64 little-endian float32, with the
expected per-token values and every aggregate that ``llama-perplexity --kl-divergence`` prints,
and two image-feature cases. Definitions (llama.cpp tools/perplexity/perplexity.cpp):

* log-probabilities are log_softmax of the logits, rounded to float32 on both sides (PLMEval keeps
  the reference's as float32, so both sides are rounded alike and a model against itself is 0);
* KL = sum over tokens with reference log-prob > -16 of p_ref * (lp_ref - lp_q);
* same top = argmax equal (first maximum); nll = -lp_q[target]; dp = p_q[target] - p_ref[target];
* mean +- sqrt((E[x^2] - E[x]^2) / (n - 1)), uncertainty 0 for n <= 10; covariance of the means
  (E[ab] - E[a]E[b]) / (n - 1), 0 for n < 10; percentiles linear at fraction * (n - 1).

Usage (from the repository root; numpy pinned in Tests/Fixtures/requirements.txt):
    /work/venv/bin/python Tests/Fixtures/make_eval_fixtures.py
Re-running gives a byte-identical file.
"""
import base64
import hashlib
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "eval")
CUTOFF = -16.0


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def log_probs(logits):
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
    return (x - lse).astype(np.float32).astype(np.float64)


def mean_unc(values):
    n = len(values)
    f = values.mean()
    var = (values * values).mean() - f * f
    return f, (np.sqrt(var / (n - 1)) if var > 0 and n > 10 else 0.0)


def cov_of_means(a, b):
    n = len(a)
    if n < 10:
        return 0.0
    return ((a * b).mean() - a.mean() * b.mean()) / (n - 1)


def pct(sorted_values, fraction):
    return float(np.percentile(sorted_values.astype(np.float64), 100.0 * fraction, method="linear"))


def token_case(name, rng, positions, vocab, logit_scale, noise, peaked):
    ref = rng.normal(0.0, logit_scale, size=(positions, vocab)).astype(np.float32)
    if peaked:  # a few strong candidates per position, like a language model's head
        for p in range(positions):
            idx = rng.choice(vocab, size=4, replace=False)
            ref[p, idx] += rng.uniform(4.0, 20.0, size=4).astype(np.float32)
    q = (ref + rng.normal(0.0, noise, size=ref.shape)).astype(np.float32)
    targets = rng.integers(0, vocab, size=positions)
    # Most targets follow the reference's favourite, as in teacher forcing over a good answer.
    follow = rng.random(positions) < 0.6
    targets = np.where(follow, ref.argmax(axis=-1), targets).astype(np.int64)

    lp, lq = log_probs(ref), log_probs(q)
    mask = lp > CUTOFF
    kl = (np.where(mask, np.exp(lp) * (lp - lq), 0.0)).sum(axis=-1)
    same = ref.argmax(axis=-1) == q.argmax(axis=-1)
    rows = np.arange(positions)
    nll, nll_base = -lq[rows, targets], -lp[rows, targets]
    dp = np.exp(-nll) - np.exp(-nll_base)

    log_ppl, log_ppl_unc = mean_unc(nll)
    log_base, log_base_unc = mean_unc(nll_base)
    cov = cov_of_means(nll, nll_base)
    ratio_unc = np.sqrt(max(0.0, log_ppl_unc**2 + log_base_unc**2 - 2 * cov))
    ppl, ppl_base = np.exp(log_ppl), np.exp(log_base)
    kl_mean, kl_unc = mean_unc(kl)
    dp_mean, dp_unc = mean_unc(dp)
    mse, mse_unc = mean_unc(dp * dp)
    rms = np.sqrt(mse)
    same_p = same.mean()
    kls = np.sort(kl.astype(np.float32))
    dps = np.sort(dp.astype(np.float32))
    summary = {
        "count": positions,
        "ppl_q": [ppl, ppl * log_ppl_unc],
        "ppl_base": [ppl_base, ppl_base * log_base_unc],
        "cor": cov / (log_ppl_unc * log_base_unc) if log_ppl_unc * log_base_unc > 0 else 0.0,
        "ln_ratio": [log_ppl - log_base, ratio_unc],
        "ratio": [np.exp(log_ppl - log_base), np.exp(log_ppl - log_base) * ratio_unc],
        "diff": [ppl - ppl_base, np.sqrt(max(0.0, (ppl * log_ppl_unc) ** 2 + (ppl_base * log_base_unc) ** 2 - 2 * ppl * ppl_base * cov))],
        "kld_mean": [kl_mean, kl_unc],
        "kld_median": float(np.median(kls.astype(np.float64))),
        "kld_min": float(kls[0]), "kld_max": float(kls[-1]),
        "kld_percentiles": {str(f): pct(kls, f) for f in [0.999, 0.99, 0.95, 0.90, 0.10, 0.05, 0.01, 0.001]},
        "dp_mean": [dp_mean, dp_unc],
        "dp_median": float(np.median(dps.astype(np.float64))),
        "dp_min": float(dps[0]), "dp_max": float(dps[-1]),
        "dp_percentiles": {str(f): pct(dps, f) for f in [0.999, 0.99, 0.95, 0.90, 0.75, 0.25, 0.10, 0.05, 0.01, 0.001]},
        "rms_dp": [rms, 0.5 / rms * mse_unc if rms > 0 else 0.0],
        "max_abs_dp": float(np.abs(dp).max()),
        "same_top": [same_p, np.sqrt(same_p * (1 - same_p) / (positions - 1))],
    }
    return {
        "name": name, "positions": positions, "vocabulary": vocab,
        "reference": b64(ref), "quantized": b64(q), "targets": targets.tolist(),
        "support": mask.sum(axis=-1).tolist(),
        "kl": kl.tolist(), "same_top": same.tolist(), "nll": nll.tolist(), "nll_base": nll_base.tolist(), "dp": dp.tolist(),
        "summary": summary,
    }


def feature_case(name, rng, tiles, tokens, hidden, noise):
    ref = rng.normal(0.0, 1.0, size=(tiles, tokens, hidden)).astype(np.float32)
    q = (ref + rng.normal(0.0, noise, size=ref.shape)).astype(np.float32)
    q[-1, 0] = -ref[-1, 0]  # one token flipped: the worst-token cosine must show it
    r64, q64 = ref.astype(np.float64), q.astype(np.float64)
    out = []
    for t in range(tiles):
        a, b = r64[t].ravel(), q64[t].ravel()
        cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        rel = np.linalg.norm(b - a) / np.linalg.norm(a)
        tok = (r64[t] * q64[t]).sum(-1) / (np.linalg.norm(r64[t], axis=-1) * np.linalg.norm(q64[t], axis=-1))
        out.append({"cosine": cos, "relative_error": rel, "mean_token_cosine": tok.mean(), "min_token_cosine": tok.min()})
    return {"name": name, "tiles": tiles, "tokens": tokens, "hidden": hidden, "reference": b64(ref), "quantized": b64(q), "tiles_expected": out}


def as_plain(o):
    if isinstance(o, dict):
        return {k: as_plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [as_plain(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def main():
    rng = np.random.default_rng(20261201)
    cases = [
        # few positions: llama's uncertainties are 0 below 11 values
        token_case("small", rng, positions=7, vocab=11, logit_scale=1.0, noise=0.3, peaked=False),
        # flat logits: every token above the cut-off (dense support)
        token_case("flat", rng, positions=40, vocab=50, logit_scale=0.5, noise=0.05, peaked=False),
        # peaked logits over a wider vocabulary: a sparse support, >= 100 tokens for full statistics
        token_case("peaked", rng, positions=120, vocab=97, logit_scale=3.0, noise=0.2, peaked=True),
    ]
    features = [feature_case("tiles3", rng, tiles=3, tokens=5, hidden=16, noise=0.05)]
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "metrics.json")
    with open(path, "w") as f:
        json.dump(as_plain({"generator": "make_eval_fixtures.py", "numpy": np.__version__, "token_cases": cases, "feature_cases": features}),
                  f, indent=None, separators=(",", ":"))
        f.write("\n")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(OUT, "SHA256SUMS"), "w") as f:
        f.write(f"{digest}  metrics.json\n")
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
