#!/usr/bin/env python3
"""The MC estimator study of issue 15: which (noise bank, S) to serve, chosen by measured error.

For every bank kind (gaussian, antithetic, sobol) and S in --samples, the committed model's
weights are re-exported with that bank (`emogate train --export-only --weights-from`, which also
refits the served uncertainty's profile and recalibrates all thresholds on dev), plus one
reference export (gaussian, S = --reference). On the test split, with plain Python onnxruntime:

* entropy error: mean |H - H_ref| over records and attributes (nats), H_ref from the reference;
* uncertainty error: the same for the served uncertainty, each export with its own profile;
* decision disagreement: fraction of test records whose served decision (rule `all` at
  --coverage, record thresholds, each export with its own calibration) differs from the
  reference's, for the served score (uncertainty) and the paper's entropy.

Throughput: raw records/s of `emogate bench --raw-only --python-reference` per S (the bank does
not change the graph's cost), every S in one round with the gaussian S = 100 export, --rounds
rounds; ratios to S = 100 are taken within a round.

Resumable: an export is skipped when its manifest exists, test-split outputs are cached next to
each export (`grid_<split>.npz`), and bench rounds already in --out are kept. Writes --out (JSON)
and, when matplotlib is installed (`scripts/requirements-study.txt`), --png.

  mc_grid.py --emogate target/release/emogate --corpus corpora/synth-default --work /tmp/mc \
      --out docs/results/mc-study.json --png docs/results/mc-study.png
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from mc_study import run_outputs, split_rows

ATTRIBUTES = ("valence", "arousal", "dominance")
BANKS = ("gaussian", "antithetic", "sobol")


def export(args, bank, s, seed, name=None):
    d = os.path.join(args.work, name or f"{bank}-{s}")
    if os.path.exists(os.path.join(d, "model.onnx")):
        return d
    cmd = [args.emogate, "train", "--corpus", args.corpus, "--out", d, "--export-only", "--weights-from", args.model,
           "--mc-samples", str(s), "--noise-bank", bank, "--noise-seed", str(seed)]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    with open(d + ".log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return d


def outputs(model_dir, features, split, threads):
    """Per attribute: value and entropy on the split (cached next to the model)."""
    names = [f"{a}_{k}" for a in ATTRIBUTES for k in ("value", "entropy")]
    return run_outputs(model_dir, features, names, f"grid_{split}.npz", threads, 64)[0]


def served_uncertainty(manifest, out):
    """The policy's (H - m(v)) / s(v) with the manifest's profile (numpy interp = Rust interp)."""
    u = {}
    for a in ATTRIBUTES:
        p = manifest["uncertainty_profile"][a]
        v = out[f"{a}_value"].astype(np.float64)
        m = np.interp(v, p["level"], p["mean"])
        sd = np.interp(v, p["level"], p["sd"])
        u[a] = ((out[f"{a}_entropy"].astype(np.float64) - m) / sd).astype(np.float32)
    return u


def record_decisions(manifest, scores, score, coverage):
    entry = next(t for t in manifest["thresholds"] if abs(t["coverage"] - coverage) < 1e-9)
    rec = next(r for r in entry["record"] if r["rule"] == "all" and r["score"] == score)
    return np.all(np.stack([scores[a] <= np.float32(rec["thresholds"][a]) for a in ATTRIBUTES], axis=1), axis=1)


def bench(args, model_dir):
    cmd = [args.emogate, "bench", "--model", model_dir, "--records", str(args.bench_records), "--batch", "64",
           "--threads", "2", "--execution-provider", "cpu", "--raw-only", "--python-reference", sys.executable]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emogate", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--png")
    ap.add_argument("--samples", default="4,8,10,16,32,64,100")
    ap.add_argument("--reference", type=int, default=2000)
    ap.add_argument("--noise-seed", type=int, default=2020)
    ap.add_argument("--reference-seed", type=int, default=7919)
    ap.add_argument("--coverage", type=float, default=0.8)
    ap.add_argument("--split", default="test")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bench-records", type=int, default=1024)
    ap.add_argument("--skip-bench", action="store_true")
    args = ap.parse_args()
    samples = [int(s) for s in args.samples.split(",")]
    os.makedirs(args.work, exist_ok=True)

    # The reference has its own seed: with the bank's seed its first S draws would be the
    # Gaussian S-bank's own, and that bank's error would look smaller than it is.
    ref_dir = export(args, "gaussian", args.reference, args.reference_seed, f"reference-gaussian-{args.reference}")
    dirs = {(b, s): export(args, b, s, args.noise_seed) for s in samples for b in BANKS}

    rows = split_rows(args.corpus, args.split)
    features = np.load(os.path.join(args.corpus, "features.npy"), mmap_mode="r")[np.sort(rows)]
    load = lambda d: json.load(open(os.path.join(d, "manifest.json")))
    ref_manifest = load(ref_dir)
    ref_out = outputs(ref_dir, features, args.split, 2)
    ref_u = served_uncertainty(ref_manifest, ref_out)
    ref_h = {a: ref_out[f"{a}_entropy"] for a in ATTRIBUTES}
    ref_dec = {"uncertainty": record_decisions(ref_manifest, ref_u, "uncertainty", args.coverage),
               "entropy": record_decisions(ref_manifest, ref_h, "entropy", args.coverage)}

    previous = json.load(open(args.out)) if os.path.exists(args.out) else {}
    results = []
    for (bank, s), d in dirs.items():
        m = load(d)
        out = outputs(d, features, args.split, 2)
        h = {a: out[f"{a}_entropy"] for a in ATTRIBUTES}
        u = served_uncertainty(m, out)
        row = {
            "bank": bank,
            "samples": s,
            "entropy_error": float(np.mean([np.abs(h[a] - ref_h[a]).mean() for a in ATTRIBUTES])),
            "uncertainty_error": float(np.mean([np.abs(u[a] - ref_u[a]).mean() for a in ATTRIBUTES])),
        }
        for score, sc in (("uncertainty", u), ("entropy", h)):
            row[f"disagreement_{score}"] = float(np.mean(record_decisions(m, sc, score, args.coverage) != ref_dec[score]))
        row["dev_gain_at_60"] = m["calibration"]["dev_gain_at_60_by_score"]["uncertainty"]
        results.append(row)

    rounds = previous.get("bench_rounds", [])
    if not args.skip_bench:
        while len(rounds) < args.rounds:
            r = {}
            for s in sorted(set(samples)):
                rep = bench(args, dirs[("gaussian", s)])
                r[str(s)] = {"rust": rep["raw_records_per_sec"], "python": rep["python_onnxruntime_records_per_sec"]}
                print(f"bench S={s}: {r[str(s)]}", file=sys.stderr, flush=True)
            r["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            rounds.append(r)
            json.dump({**previous, "bench_rounds": rounds}, open(args.out, "w"), indent=1)
    speed = {}
    for s in samples:
        ratios = [rd[str(s)]["rust"] / rd["100"]["rust"] for rd in rounds if str(s) in rd and "100" in rd]
        py = [rd[str(s)]["python"] / rd["100"]["python"] for rd in rounds if rd.get(str(s), {}).get("python")]
        speed[s] = {"rust_vs_s100": ratios, "python_vs_s100": py,
                    "rust_records_per_sec": [rd[str(s)]["rust"] for rd in rounds if str(s) in rd],
                    "python_records_per_sec": [rd[str(s)]["python"] for rd in rounds if str(s) in rd]}
    base = next(r for r in results if r["bank"] == "gaussian" and r["samples"] == 100)
    ok = [r for r in results if r["entropy_error"] <= base["entropy_error"]
          and r["disagreement_uncertainty"] <= base["disagreement_uncertainty"]]
    # Cheapest S first (the bank does not change the cost), then the smaller entropy error.
    choice = min(ok, key=lambda r: (r["samples"], r["entropy_error"]))
    report = {
        "corpus": args.corpus, "split": args.split, "records": int(len(features)), "coverage": args.coverage,
        "decision_rule": "all", "reference": f"gaussian S={args.reference} seed {args.reference_seed}",
        "noise_seed": args.noise_seed,
        "results": results, "bench_rounds": rounds, "speed": {str(k): v for k, v in speed.items()},
        "rule": "cheapest S, then smallest entropy error, among (bank, S) whose entropy error and served-decision "
                "disagreement are both <= gaussian S=100's",
        "choice": choice,
    }
    json.dump(report, open(args.out, "w"), indent=1)
    print(json.dumps({"choice": choice, "gaussian_100": base}, indent=1))
    if args.png:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib not installed (pip install -r scripts/requirements-study.txt): no PNG", file=sys.stderr)
            return
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for bank, marker in zip(BANKS, "o^s"):
            pts = [(np.median(speed[r["samples"]]["rust_records_per_sec"]), r["entropy_error"])
                   for r in results if r["bank"] == bank and speed[r["samples"]]["rust_records_per_sec"]]
            ax.plot(*zip(*pts), marker=marker, label=bank)
            for r in results:
                if r["bank"] == bank and speed[r["samples"]]["rust_records_per_sec"]:
                    ax.annotate(str(r["samples"]), (np.median(speed[r["samples"]]["rust_records_per_sec"]), r["entropy_error"]),
                                fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(base["entropy_error"], color="grey", linestyle=":", label="gaussian S=100 error")
        ax.set_xlabel("raw records/s (emogate bench, 2 threads, median of rounds)")
        ax.set_ylabel(f"mean |H - H(S={args.reference})| (nats)")
        ax.set_yscale("log")
        ax.set_title("MC estimator: entropy error vs throughput (test split)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
