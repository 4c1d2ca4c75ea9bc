"""Why quintile CCC does or does not fall from the most to the least certain fifth.

CCC = 2·cov / (var_pred + var_label + (mean_pred − mean_label)²) mixes three things that a
ranking by entropy can change: how large the errors are, how widely the labels spread, and
how far the subset's predictions are off on average. This script splits one split of an
MSP-style corpus (`emogate synth` layout) into entropy quintiles per attribute, using the
served model (plain Python onnxruntime, CPU), and prints for each fifth:

* `ccc`, `pearson_r`, `mse` of the `value` output against the consensus label (mean vote);
* `label_var`, `pred_var`, `bias2` ((mean_pred − mean_label)²): the parts of CCC's denominator;
* `ambiguity` (mean of the generator's latent u, from `synth_truth.csv` when present) and
  `label_extremity` (mean |label − split mean|);

and per attribute the correlation of the entropy with the label's extremity, the predicted
value, the label and (synthetic corpora) the true ambiguity.

It also ranks the same predictions by the generator's *true* ambiguity, to separate "the
corpus lacks the property" from "the entropy does not find it", and (`level_adjusted`, beyond
the paper, measured only) by the entropy minus the dev split's mean entropy at the same
predicted level. Prints one JSON object.
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


def ccc(x, y):
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(), y.var()
    cov = ((x - mx) * (y - my)).mean()
    return float(2 * cov / (vx + vy + (mx - my) ** 2))


def fifths(order, n):
    """Index arrays of the five fifths of `order` (most certain first)."""
    edges = [round(k * n / 5) for k in range(6)]
    return [order[edges[k] : edges[k + 1]] for k in range(5)]


def describe(pred, label, ambiguity, centre, idx):
    p, y = pred[idx], label[idx]
    row = {
        "n": int(len(idx)),
        "ccc": ccc(p, y),
        "pearson_r": float(np.corrcoef(p, y)[0, 1]),
        "mse": float(((p - y) ** 2).mean()),
        "label_var": float(y.var()),
        "pred_var": float(p.var()),
        "bias2": float((p.mean() - y.mean()) ** 2),
        "label_extremity": float(np.abs(y - centre).mean()),
    }
    if ambiguity is not None:
        row["ambiguity"] = float(ambiguity[idx].mean())
    return row


def session(model_dir, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(os.path.join(model_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"])


def run(sess, corpus, rows, batch):
    """`{a}_value` and `{a}_entropy` for the corpus rows `rows` (sorted feature-row indices)."""
    features = np.load(os.path.join(corpus, "features.npy"), mmap_mode="r")[rows]
    names = [f"{a}_{k}" for a in ATTRIBUTES for k in ("value", "entropy")]
    outs = defaultdict(list)
    for start in range(0, len(features), batch):
        x = np.ascontiguousarray(features[start : start + batch], dtype=np.float32)
        for name, v in zip(names, sess.run(names, {"features": x})):
            outs[name].append(v.reshape(-1))
    return {k: np.concatenate(v).astype(np.float64) for k, v in outs.items()}


def level_adjusted(h, pred, dev_h, dev_pred, bins=10):
    """Entropy minus the dev split's mean entropy at the same predicted level (deciles of the
    dev predictions): what is left of the uncertainty once its dependence on the level is gone."""
    edges = np.quantile(dev_pred, np.linspace(0, 1, bins + 1)[1:-1])
    dev_bin, bin_ = np.searchsorted(edges, dev_pred), np.searchsorted(edges, pred)
    means = np.array([dev_h[dev_bin == b].mean() for b in range(bins)])
    return h - means[bin_]


def ccc_at(pred, y, h, coverage):
    keep = np.argsort(h, kind="stable")[: round(coverage * len(h))]
    return ccc(pred[keep], y[keep])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()

    rows = np.sort(split_rows(args.corpus, args.split))
    with open(os.path.join(args.corpus, "features_index.csv")) as f:
        ids = [r["utterance_id"] for r in csv.DictReader(f)]
    ids = [ids[i] for i in rows]
    votes = defaultdict(lambda: {a: [] for a in ATTRIBUTES})
    with open(os.path.join(args.corpus, "labels.csv")) as f:
        for r in csv.DictReader(f):
            for a in ATTRIBUTES:
                votes[r["utterance_id"]][a].append(float(r[a]))
    labels = {a: np.array([np.mean(votes[u][a]) for u in ids]) for a in ATTRIBUTES}
    truth_path = os.path.join(args.corpus, "synth_truth.csv")
    ambiguity = None
    if os.path.exists(truth_path):
        with open(truth_path) as f:
            u = {r["utterance_id"]: float(r["ambiguity"]) for r in csv.DictReader(f)}
        ambiguity = np.array([u[i] for i in ids])

    sess = session(args.model, args.threads)
    outs = run(sess, args.corpus, rows, args.batch)
    dev_outs = run(sess, args.corpus, np.sort(split_rows(args.corpus, "dev")), args.batch)

    report = {"model": args.model, "corpus": args.corpus, "split": args.split, "records": len(ids)}
    for a in ATTRIBUTES:
        pred, y, h = outs[f"{a}_value"], labels[a], outs[f"{a}_entropy"]
        centre = y.mean()
        entry = {
            "all": describe(pred, y, ambiguity, centre, np.arange(len(y))),
            "by_entropy": [describe(pred, y, ambiguity, centre, q) for q in fifths(np.argsort(h, kind="stable"), len(y))],
            "corr_entropy_extremity": float(np.corrcoef(h, np.abs(y - centre))[0, 1]),
            "corr_entropy_prediction": float(np.corrcoef(h, pred)[0, 1]),
            "corr_entropy_label": float(np.corrcoef(h, y)[0, 1]),
        }
        if ambiguity is not None:
            entry["corr_entropy_ambiguity"] = float(np.corrcoef(h, ambiguity)[0, 1])
            entry["by_true_ambiguity"] = [
                describe(pred, y, ambiguity, centre, q) for q in fifths(np.argsort(ambiguity, kind="stable"), len(y))
            ]
        # Beyond the paper, measured only: rank by the entropy with its level dependence removed.
        adjusted = level_adjusted(h, pred, dev_outs[f"{a}_entropy"], dev_outs[f"{a}_value"])
        entry["level_adjusted"] = {
            "ccc_at_60": ccc_at(pred, y, adjusted, 0.6),
            "ccc_at_60_own_entropy": ccc_at(pred, y, h, 0.6),
            "by_entropy": [
                describe(pred, y, ambiguity, centre, q) for q in fifths(np.argsort(adjusted, kind="stable"), len(y))
            ],
        }
        if ambiguity is not None:
            entry["level_adjusted"]["corr_ambiguity"] = float(np.corrcoef(adjusted, ambiguity)[0, 1])
        report[a] = entry
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
