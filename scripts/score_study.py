"""Which per-record score ranks errors best: the paper's entropy or a score fitted on dev?

Measures, never serves: the served `{a}_uncertainty` is computed in Rust (`src/uncertainty/score.rs`);
this script is how its design was chosen, and re-checks it on any model and corpus. For one model
and one MSP-style corpus it runs the serving graph (plain Python onnxruntime, CPU) on dev and test,
fits each candidate score on **dev only**, and reports on test, per attribute:

* `gain_at_60`: CCC of the 60 % most certain records over CCC at 100 % (the paper's Fig. 3 claim);
* `quintiles`: CCC per fifth, most → least certain (Fig. 2), `least_worst` and `monotone`;
* `corr_ambiguity`: correlation with the generator's latent ambiguity (synthetic corpora only).

Candidates (all fitted on dev; `level` is the served prediction `{a}_value`):

* `entropy`: the paper's score.
* `level_adjusted`: entropy minus the dev mean entropy at the same level (piecewise-linear in
  the level between dev quantile knots).
* `level_z`: the same, divided by the dev standard deviation of the entropy at that level.
* `disagreement`: |STL value − VAE-ER consensus|, the two regressors' disagreement.
* `combined`: level_z(entropy) + w · level_z(disagreement), w chosen on dev from a grid.
* `expected_error`: a least-squares fit on dev of log squared error on
  [entropy, disagreement, level, level²] — an expected-error score that is *not* level-neutral.

Prints one JSON object; `--cache DIR` keeps the graph outputs between runs.
"""

import argparse
import csv
import json
import os
import sys
from collections import defaultdict

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mc_study import ATTRIBUTES, split_rows  # noqa: E402
from quintile_study import ccc, fifths  # noqa: E402

KNOTS = 10
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def outputs(model, corpus, split, threads, batch, cache):
    path = os.path.join(cache, f"{split}.npz") if cache else None
    if path and os.path.exists(path):
        return dict(np.load(path))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(os.path.join(model, "model.onnx"), opts, providers=["CPUExecutionProvider"])
    rows = np.sort(split_rows(corpus, split))
    features = np.load(os.path.join(corpus, "features.npy"), mmap_mode="r")
    names = [f"{a}_{k}" for a in ATTRIBUTES for k in ("value", "consensus", "entropy")]
    outs = defaultdict(list)
    for start in range(0, len(rows), batch):
        x = np.ascontiguousarray(features[rows[start : start + batch]], dtype=np.float32)
        for name, v in zip(names, sess.run(names, {"features": x})):
            outs[name].append(v.reshape(-1))
    result = {k: np.concatenate(v).astype(np.float64) for k, v in outs.items()}
    result["rows"] = rows
    if path:
        os.makedirs(cache, exist_ok=True)
        np.savez(path, **result)
    return result


def labels_and_ambiguity(corpus, rows):
    with open(os.path.join(corpus, "features_index.csv")) as f:
        ids = [r["utterance_id"] for r in csv.DictReader(f)]
    ids = [ids[i] for i in rows]
    votes = defaultdict(lambda: {a: [] for a in ATTRIBUTES})
    with open(os.path.join(corpus, "labels.csv")) as f:
        for r in csv.DictReader(f):
            for a in ATTRIBUTES:
                votes[r["utterance_id"]][a].append(float(r[a]))
    labels = {a: np.array([np.mean(votes[u][a]) for u in ids]) for a in ATTRIBUTES}
    ambiguity = None
    truth = os.path.join(corpus, "synth_truth.csv")
    if os.path.exists(truth):
        with open(truth) as f:
            u = {r["utterance_id"]: float(r["ambiguity"]) for r in csv.DictReader(f)}
        ambiguity = np.array([u[i] for i in ids])
    return labels, ambiguity


class LevelProfile:
    """Mean and sd of a signal as piecewise-linear functions of the level: the definition of
    `src/uncertainty/level_score.rs` (dev records sorted by level, cut into `knots` groups of
    equal count, remainder to the first groups; a knot at each group's mean level)."""

    def __init__(self, level, signal, knots=KNOTS):
        order = np.argsort(level, kind="stable")
        base, extra = divmod(len(level), knots)
        groups, start = [], 0
        for k in range(knots):
            size = base + (1 if k < extra else 0)
            g = order[start : start + size]
            start += size
            if groups and level[g].mean() <= level[groups[-1]].mean():
                groups[-1] = np.concatenate([groups[-1], g])
            else:
                groups.append(g)
        self.x = [level[g].mean() for g in groups]
        self.mean = [signal[g].mean() for g in groups]
        self.sd = [max(signal[g].std(), 1e-6) for g in groups]

    def centred(self, level, signal):
        return signal - np.interp(level, self.x, self.mean)

    def z(self, level, signal):
        return self.centred(level, signal) / np.interp(level, self.x, self.sd)


def ccc_at(pred, y, score, coverage):
    keep = np.argsort(score, kind="stable")[: round(coverage * len(score))]
    return ccc(pred[keep], y[keep])


def judge(pred, y, score, ambiguity):
    full = ccc(pred, y)
    quint = [ccc(pred[q], y[q]) for q in fifths(np.argsort(score, kind="stable"), len(y))]
    row = {
        "ccc_100": full,
        "ccc_60": ccc_at(pred, y, score, 0.6),
        "gain_at_60": ccc_at(pred, y, score, 0.6) / full - 1,
        "quintiles": quint,
        "least_worst": bool(quint[-1] == min(quint)),
        "monotone": bool(all(a > b for a, b in zip(quint, quint[1:]))),
        "corr_sq_error": float(np.corrcoef(score, (pred - y) ** 2)[0, 1]),
    }
    if ambiguity is not None:
        row["corr_ambiguity"] = float(np.corrcoef(score, ambiguity)[0, 1])
    return row


def candidates(dev, test, a, dev_y):
    """Each candidate as (dev score, test score, fitted parameters)."""
    v, c, h = (f"{a}_value", f"{a}_consensus", f"{a}_entropy")
    d_dev, d_test = np.abs(dev[v] - dev[c]), np.abs(test[v] - test[c])
    out = {"entropy": (dev[h], test[h], {}), "disagreement": (d_dev, d_test, {})}
    ph = LevelProfile(dev[v], dev[h])
    out["level_adjusted"] = (ph.centred(dev[v], dev[h]), ph.centred(test[v], test[h]), {})
    zh_dev, zh_test = ph.z(dev[v], dev[h]), ph.z(test[v], test[h])
    out["level_z"] = (zh_dev, zh_test, {})
    pd = LevelProfile(dev[v], d_dev)
    zd_dev, zd_test = pd.z(dev[v], d_dev), pd.z(test[v], d_test)
    best = max(WEIGHTS, key=lambda w: ccc_at(dev[v], dev_y, zh_dev + w * zd_dev, 0.6))
    out["combined"] = (zh_dev + best * zd_dev, zh_test + best * zd_test, {"w": best})

    def design(s, d):
        return np.stack([np.ones_like(d), s[h], d, s[v], s[v] ** 2], axis=1)

    coef, *_ = np.linalg.lstsq(design(dev, d_dev), np.log((dev[v] - dev_y) ** 2 + 1e-3), rcond=None)
    out["expected_error"] = (design(dev, d_dev) @ coef, design(test, d_test) @ coef, {"coef": coef.tolist()})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--fit-corpus", help="fit on this corpus's dev split (default: --corpus), e.g. the training corpus when --corpus is a cross-corpus test")
    p.add_argument("--cache")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()

    fit_corpus = args.fit_corpus or args.corpus
    fit_cache = os.path.join(args.cache, "fit") if args.cache and args.fit_corpus else args.cache
    dev = outputs(args.model, fit_corpus, "dev", args.threads, args.batch, fit_cache)
    test = outputs(args.model, args.corpus, "test", args.threads, args.batch, args.cache)
    dev_y, _ = labels_and_ambiguity(fit_corpus, dev["rows"])
    test_y, ambiguity = labels_and_ambiguity(args.corpus, test["rows"])
    report = {"model": args.model, "corpus": args.corpus, "fit_corpus": fit_corpus, "attributes": {}}
    for a in ATTRIBUTES:
        entry = {}
        for name, (s_dev, s_test, params) in candidates(dev, test, a, dev_y[a]).items():
            entry[name] = {
                "dev": judge(dev[f"{a}_value"], dev_y[a], s_dev, None),
                "test": judge(test[f"{a}_value"], test_y[a], s_test, ambiguity),
                **params,
            }
        report["attributes"][a] = entry
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
