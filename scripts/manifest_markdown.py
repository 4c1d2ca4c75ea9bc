#!/usr/bin/env python3
"""Renders the evaluation metrics that `emogate train` stores in a model's manifest.json as the
Markdown tables of docs/model-card.md ("Results"), so the card's numbers are copied by a program.

Usage: manifest_markdown.py MODEL_DIR
"""
import json
import os
import sys

ATTRS = ["valence", "arousal", "dominance"]


def falls(q):
    return "yes" if all(a > b for a, b in zip(q, q[1:])) else "no"


def split_table(metrics):
    out = [
        "| attribute | n | CCC 100% | CCC 60% | gain at 60% | quintile CCC (most → least certain) | falls monotonically | consensus-head CCC | mean entropy (nats) | KLD soft | corr(entropy, vote sd) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in ATTRS:
        m = metrics[a]
        at60 = next(p["ccc"] for p in m["coverage_curve"] if abs(p["coverage"] - 0.6) < 1e-9)
        gain = (at60 - m["ccc_full"]) / abs(m["ccc_full"]) * 100
        q = m["quintile_ccc"]
        out.append(
            f"| {a} | {m['n']} | {m['ccc_full']:.3f} | {at60:.3f} | {gain:+.1f}% | "
            + " / ".join(f"{x:.3f}" for x in q)
            + f" | {falls(q)} | {m['ccc_consensus_head']:.3f} | {m['mean_entropy']:.3f} | {m['kld_soft']:.3f} | {m['entropy_vs_disagreement']:.3f} |"
        )
    return out


def main(model_dir):
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    metrics = manifest["metrics"]
    out = [f"Model sha256 `{manifest['sha256']}`, created {manifest['created']}.", ""]
    for split in ("dev", "test"):
        out += [f"**{split} split**", ""] + split_table(metrics[split]) + [""]
    covs = [p["coverage"] for p in metrics["test"][ATTRS[0]]["coverage_curve"]]
    out += ["**coverage curve (test)**", ""]
    out.append("| attribute | " + " | ".join(f"{c:.1f}" for c in covs) + " |")
    out.append("|---" * (len(covs) + 1) + "|")
    for a in ATTRS:
        out.append(f"| {a} | " + " | ".join(f"{p['ccc']:.3f}" for p in metrics["test"][a]["coverage_curve"]) + " |")
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
