#!/usr/bin/env python3
"""Renders the tables of an `emogate evaluate` report.json as Markdown (for docs/results/README.md
and the model card), so that every number in the docs is copied by a program from the report."""
import json
import sys

ATTRS = ["valence", "arousal", "dominance"]
TABLE_COVS = [1.0, 0.8, 0.6, 0.4, 0.2]
PAPER = {  # the paper's test-set numbers (Sec. V, Table III, Tables I/II)
    "ccc_full": {"valence": 0.3170, "arousal": 0.7205, "dominance": 0.6329},
    "gain_at_60": {"valence": 16.85, "arousal": 7.12, "dominance": 8.01},
}


def pct(x):
    return f"{x * 100:+.1f}%"


def main(path):
    r = json.load(open(path))
    out = []
    s = r["settings"]
    out.append(f"Command: `{s['command']}`  ")
    out.append(
        f"Trials: {s['trials']} (seeds {', '.join(map(str, s['seeds']))}); MC samples / dropout passes: {s['mc_samples']}; "
        f"wall time {r['wall_seconds'] / 60:.0f} min; created {r['created']}; corpus `{r['corpus']['id']}` "
        f"(sha256 {r['corpus']['sha256'][:12]}…, {r['corpus']['records']} test records); model `{r['model']['id']}@{r['model']['version']}` "
        f"(sha256 {r['model']['sha256'][:12]}…)."
    )
    out.append("")
    out.append("### Evaluated model on the test split (Figs. 2 and 3)")
    out.append("")
    out.append("| attribute | CCC 100% (paper) | CCC 80% | CCC 60% | CCC 40% | CCC 20% | gain at 60% (paper) | quintile CCC, most → least certain |")
    out.append("|---|---|---|---|---|---|---|---|")
    for a in ATTRS:
        an = r["attributes"][a]
        c = {round(p["coverage"], 2): p["ccc"] for p in an["coverage_curve"]}
        q = " / ".join(f"{v:.3f}" for v in an["quintile_ccc"])
        out.append(
            f"| {a} | {an['ccc_full']:.3f} ({PAPER['ccc_full'][a]:.3f}) | {c[0.8]:.3f} | {c[0.6]:.3f} | {c[0.4]:.3f} | {c[0.2]:.3f} "
            f"| {pct(an['relative_gain_at_60'])} (+{PAPER['gain_at_60'][a]:.2f}%) | {q} |"
        )
    out.append("")
    out.append("### Uncertainty transfer on the test split (Fig. 4): gain at 60% coverage")
    out.append("")
    out.append("| predictions \\ uncertainty of | " + " | ".join(ATTRS) + " |")
    out.append("|---|---|---|---|")
    for d in ATTRS:
        row = [pct(c["relative_gain_at_60"]) for src in ATTRS for c in r["utl"] if c["decided"] == d and c["source"] == src]
        out.append(f"| {d} | " + " | ".join(row) + " |")
    out.append("")
    for table, title in [
        ("within_corpus", "Baselines and ablations on the test split (Table III and Table I's methods within corpus)"),
        ("cross_corpus", "Cross corpus (Table I): CCC averaged over 5 folds"),
        ("cross_corpus_utl", "Cross-corpus uncertainty transfer (Table II)"),
    ]:
        cells = [c for c in r["tables"] if c["table"] == table]
        if not cells:
            continue
        out.append(f"### {title}")
        out.append("")
        out.append(f"Mean ± sample std over {s['trials']} trials; **bold** = best mean, † = best and better than every other method with one-tailed Welch p ≤ 0.05; p = one-tailed p of \"VAE-ER is better\".")
        out.append("")
        out.append("| attribute | by uncertainty of | method | " + " | ".join(f"{int(c * 100)}%" for c in TABLE_COVS[1:]) + " | p at 60% |")
        out.append("|---|---|---|---|---|---|---|---|")
        keys = []
        for c in cells:
            k = (c["attribute"], c["uncertainty_source"], c["method"])
            if k not in keys:
                keys.append(k)
        order = {m: i for i, (_, _, m) in enumerate(keys)}
        keys.sort(key=lambda k: (ATTRS.index(k[0]), ATTRS.index(k[1]), order[k[2]]))
        for a, src, m in keys:
            row = []
            p60 = ""
            for cov in TABLE_COVS[1:]:
                c = next(c for c in cells if (c["attribute"], c["uncertainty_source"], c["method"]) == (a, src, m) and abs(c["coverage"] - cov) < 1e-9)
                v = f"{c['mean']:.3f} ± {c['std']:.3f}"
                if c["best"]:
                    v = f"**{v}**"
                if c["significant"]:
                    v += " †"
                row.append(v)
                if abs(cov - 0.6) < 1e-9 and c["p_proposed_better"] is not None:
                    p60 = f"{c['p_proposed_better']:.3f}"
            out.append(f"| {a} | {src} | {m} | " + " | ".join(row) + f" | {p60} |")
        out.append("")
    if r.get("cross_corpus"):
        cc = r["cross_corpus"]
        out.append("Cross-corpus STL regressors (fold mean CCC at 100%): " + ", ".join(f"{a} {cc['stl_ccc_full'][a]:.3f}" for a in ATTRS) + ".")
        out.append("")
    out.append("### Inference cost on the test split (trial 0, three attributes, batch 256, same process)")
    out.append("")
    out.append("| method | uncertainty | parameters (trained) | parameters at inference | seconds | records/s | seconds, every dropout pass through the whole net |")
    out.append("|---|---|---|---|---|---|---|")
    for m in r["inference"]:
        full = f"{m['test_seconds_full_passes']:.2f}" if m["test_seconds_full_passes"] is not None else ""
        out.append(f"| {m['method']} | {m['uncertainty']} | {m['parameters']:,} | {m['parameters_at_inference']:,} | {m['test_seconds']:.2f} | {m['records_per_sec']:.0f} | {full} |")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/report.json")
