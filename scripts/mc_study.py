"""Convergence of the MC noise bank: entropy error and accept/reject agreement per (bank, S).

Runs every exported model directory given (plain Python onnxruntime, CPU) on one split of an
MSP-style corpus (`emogate synth` layout) and compares each model's per-attribute entropies
and decisions with two references:

* `--truth`: the model whose entropies stand for the exact expectation (e.g. Gaussian S=2000);
  reported as mean |H - H_truth| over records and attributes, and as agreement with the
  truth model's decisions (each model with its own dev-calibrated thresholds).
* `--decisions`: the model whose accept/reject decisions the service makes today (Gaussian
  S=100); agreement is the fraction of records whose three per-attribute decisions all match.

Decisions are `entropy <= threshold` at `--coverage`, with two threshold choices:
`fixed` (the decision reference's manifest thresholds for every model) and `own` (each
model's own dev-calibrated thresholds, written by its `emogate train --export-only`).

Prints one JSON object; entropies are cached next to each model (`study_<split>.npz`).
"""

import argparse
import csv
import json
import os
import time

import numpy as np
import onnxruntime as ort

ATTRIBUTES = ("valence", "arousal", "dominance")


def split_rows(corpus, split):
    with open(os.path.join(corpus, "features_index.csv")) as f:
        index = {row["utterance_id"]: i for i, row in enumerate(csv.DictReader(f))}
    with open(os.path.join(corpus, "partitions.csv")) as f:
        return np.array([index[r["utterance_id"]] for r in csv.DictReader(f) if r["split"] == split])


def run_outputs(model_dir, features, names, cache, threads, batch):
    """The graph's `names` outputs on `features` (plain onnxruntime, CPU) and the seconds it
    took, cached as `cache` next to the model (mc_grid.py uses it too)."""
    cache = os.path.join(model_dir, cache)
    if os.path.exists(cache):
        data = np.load(cache)
        return {n: data[n] for n in names}, float(data["seconds"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"])
    parts = {n: [] for n in names}
    t0 = time.perf_counter()
    for start in range(0, len(features), batch):
        x = np.ascontiguousarray(features[start : start + batch], dtype=np.float32)
        for n, v in zip(names, sess.run(names, {"features": x})):
            parts[n].append(v.reshape(-1))
    seconds = time.perf_counter() - t0
    out = {n: np.concatenate(v) for n, v in parts.items()}
    np.savez(cache, seconds=seconds, **out)
    return out, seconds


def entropies(model_dir, features, split, threads, batch):
    names = [f"{a}_entropy" for a in ATTRIBUTES]
    out, seconds = run_outputs(model_dir, features, names, f"study_{split}.npz", threads, batch)
    return {a: out[f"{a}_entropy"] for a in ATTRIBUTES}, seconds


def thresholds(model_dir, coverage):
    with open(os.path.join(model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    for t in manifest["thresholds"]:
        if abs(t["coverage"] - coverage) < 1e-9:
            return manifest, np.array([t["entropy"][a] for a in ATTRIBUTES])
    raise SystemExit(f"{model_dir}: no thresholds for coverage {coverage}")


def decisions(h, th):
    return np.stack([h[a] <= th[i] for i, a in enumerate(ATTRIBUTES)], axis=1)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--truth", required=True, help="model dir standing for the exact entropy")
    p.add_argument("--decisions", required=True, help="model dir whose decisions are the reference")
    p.add_argument("--coverage", type=float, default=0.6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("models", nargs="+")
    args = p.parse_args()

    rows = split_rows(args.corpus, args.split)
    features = np.load(os.path.join(args.corpus, "features.npy"), mmap_mode="r")[np.sort(rows)]
    h_truth, _ = entropies(args.truth, features, args.split, args.threads, args.batch)
    h_ref, _ = entropies(args.decisions, features, args.split, args.threads, args.batch)
    _, th_fixed = thresholds(args.decisions, args.coverage)
    d_ref = decisions(h_ref, th_fixed)
    _, th_truth = thresholds(args.truth, args.coverage)
    d_truth = decisions(h_truth, th_truth)
    results = []
    for model in args.models:
        h, seconds = entropies(model, features, args.split, args.threads, args.batch)
        manifest, th_own = thresholds(model, args.coverage)
        err = np.mean([np.abs(h[a] - h_truth[a]).mean() for a in ATTRIBUTES])
        row = {
            "model": model,
            "noise_bank": manifest["noise_bank"],
            "mc_samples": manifest["mc_samples"],
            "mean_abs_entropy_error": float(err),
        }
        for name, th in (("fixed", th_fixed), ("own", th_own)):
            d = decisions(h, th)
            row[f"agree_records_{name}"] = float(np.mean(np.all(d == d_ref, axis=1)))
            row[f"agree_attribute_min_{name}"] = float(np.min(np.mean(d == d_ref, axis=0)))
        row["agree_truth_records_own"] = float(np.mean(np.all(decisions(h, th_own) == d_truth, axis=1)))
        row["python_ort_records_per_sec"] = len(features) / seconds
        results.append(row)
    print(
        json.dumps(
            {
                "corpus": args.corpus,
                "split": args.split,
                "records": int(len(features)),
                "coverage": args.coverage,
                "truth": args.truth,
                "decisions": args.decisions,
                "fixed_thresholds": th_fixed.tolist(),
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
