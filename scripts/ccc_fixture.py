#!/usr/bin/env python3
"""Reference values for emogate's uncertainty metrics, from numpy + audmetric.

emogate's CCC (src/uncertainty/ccc.rs) must equal ``audmetric.concordance_cc``, the
implementation the research code uses. This script is the independent side of that check.

Modes (run from the repository root with the reference venv, ``.cache/venv/bin/python``):

``python scripts/ccc_fixture.py``
    Regenerates ``tests/fixtures/uncertainty/ccc_audmetric.json``: a fixed set of seeded
    vector pairs (random, correlated, negatively correlated, shifted/scaled, small n,
    degenerate) with ``audmetric.concordance_cc`` and ``audmetric.pearson_cc`` values. The
    file is committed; ``tests/uncertainty_ccc_fixture.rs`` reads it without Python.

``python scripts/ccc_fixture.py --check``
    Recomputes the fixture and compares it with the committed file (vectors exactly,
    metric values within 1e-12); exits 1 on any difference. Proves the committed numbers
    come from this script and these package versions.

``python scripts/ccc_fixture.py --reference INPUT.json``
    Reads ``{"pred", "truth", "uncertainty", "coverages"}`` and prints, as JSON, the reject
    option computed here with numpy + audmetric: the coverage curve, the uncertainty
    quintiles and the coverage thresholds, following the conventions documented in
    src/uncertainty/coverage.rs. Used by ``tests/uncertainty_python_reference.rs``.

All vectors are float32 values (what the model emits), written in the shortest decimal
that round-trips as float32 (``str(np.float32(v))``), so any correctly rounding reader gets
the same bits back; audmetric works on the exact float64 of each float32. Undefined metrics
(audmetric's NaN) are written as JSON ``null``.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import audmetric
import numpy as np

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/uncertainty/ccc_audmetric.json"
SEED = 20240601
# Same tolerance as kept_count() in src/uncertainty/coverage.rs: absorbs the binary
# representation error of decimal coverages (0.7·45 = 31.499999999999996) when rounding c·n half up.
ROUND_SLACK = 1e-12


def f32(values):
    """float32-rounded copy as float64, the exact values Rust will see."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def nan_to_none(x):
    x = float(x)
    return None if math.isnan(x) else x


def cases():
    rng = np.random.default_rng(SEED)
    out = []

    def add(name, pred, truth):
        pred, truth = f32(pred), f32(truth)
        out.append(
            {
                "name": name,
                "pred": pred,
                "truth": truth,
                "ccc": nan_to_none(audmetric.concordance_cc(truth, pred)),
                "pearson": nan_to_none(audmetric.pearson_cc(truth, pred)),
            }
        )

    add("random_independent_n200", rng.normal(0, 1, 200), rng.normal(0, 1, 200))
    truth = rng.uniform(1, 7, 500)
    add("correlated_likert_n500", 0.8 * truth + 0.7 + rng.normal(0, 0.6, 500), truth)
    truth = rng.normal(4, 1.2, 300)
    add("negatively_correlated_n300", 8 - truth + rng.normal(0, 0.8, 300), truth)
    truth = rng.uniform(1, 7, 100)
    add("shifted_scaled_n100", 2.0 * truth + 1.5, truth)
    truth = rng.uniform(1, 7, 50)
    add("shifted_copy_n50", truth + 0.5, truth)
    truth = rng.normal(0, 3, 40)
    add("identical_n40", truth, truth)
    add("small_n2", rng.normal(0, 1, 2), rng.normal(0, 1, 2))
    add("small_n3", rng.normal(0, 1, 3), rng.normal(0, 1, 3))
    add("audmetric_docstring_n3", [0, 1, 1], [0, 1, 2])
    add("large_offset_n60", rng.normal(1000, 0.5, 60), rng.normal(1000.3, 0.5, 60))
    add("pred_constant_n20", np.full(20, 3.0), rng.uniform(1, 7, 20))
    add("both_constant_different_n10", np.full(10, 2.5), np.full(10, 4.0))
    add("both_constant_equal_n10", np.full(10, 0.1), np.full(10, 0.1))
    return out


def fixture():
    return {
        "generator": "scripts/ccc_fixture.py",
        "seed": SEED,
        "audmetric_version": audmetric.__version__,
        "numpy_version": np.__version__,
        "cases": cases(),
    }


def f32_text(values):
    return "[" + ", ".join(str(np.float32(v)) for v in values) + "]"


def case_line(case):
    # One case per line: readable diffs without a line per number.
    fields = [f'"name": {json.dumps(case["name"])}']
    fields += [f'"{key}": {f32_text(case[key])}' for key in ("pred", "truth")]
    fields += [f'"{key}": {json.dumps(case[key], allow_nan=False)}' for key in ("ccc", "pearson")]
    return "{" + ", ".join(fields) + "}"


def write(data):
    lines = [case_line(case) for case in data["cases"]]
    header = {k: v for k, v in data.items() if k != "cases"}
    text = json.dumps(header, allow_nan=False)[:-1] + ', "cases": [\n' + ",\n".join(lines) + "\n]}\n"
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(text)


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-12


def check(data):
    committed = json.loads(FIXTURE.read_text())
    problems = []
    for key in ("seed", "audmetric_version", "numpy_version"):
        if committed.get(key) != data[key]:
            problems.append(f"{key}: committed {committed.get(key)!r}, now {data[key]!r}")
    if len(committed["cases"]) != len(data["cases"]):
        problems.append(f"{len(committed['cases'])} committed cases, {len(data['cases'])} generated")
    for old, new in zip(committed["cases"], data["cases"]):
        name = new["name"]
        same = all(np.array_equal(f32(old[key]), new[key]) for key in ("pred", "truth"))
        if old["name"] != name or not same:
            problems.append(f"{name}: vectors differ from the committed ones")
        for metric in ("ccc", "pearson"):
            if not close(old[metric], new[metric]):
                problems.append(f"{name}: {metric} committed {old[metric]}, now {new[metric]}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"{FIXTURE.name}: {len(data['cases'])} cases match")


def kept_count(n, coverage):
    return min(n, math.floor(coverage * n + 0.5 + ROUND_SLACK * (1 + n)))


def reference(path):
    spec = json.loads(Path(path).read_text())
    pred, truth, unc = f32(spec["pred"]), f32(spec["truth"]), f32(spec["uncertainty"])
    n = len(pred)
    # Most certain first; ties keep the original order (stable sort).
    order = np.argsort(unc, kind="stable")

    curve, thresholds = [], []
    for c in spec["coverages"]:
        k = kept_count(n, c)
        mask = np.zeros(n, dtype=bool)
        mask[order[:k]] = True  # boolean mask: kept items stay in their original order
        ccc = audmetric.concordance_cc(truth[mask], pred[mask]) if k >= 2 else float("nan")
        curve.append({"coverage": c, "n": int(k), "ccc": nan_to_none(ccc)})
        if k == n:
            thresholds.append("inf")
        elif k == 0:
            thresholds.append("-inf")
        else:
            thresholds.append(float(unc[order[k - 1]]))

    base, rem = divmod(n, 5)
    sizes = [base + (1 if g < rem else 0) for g in range(5)]
    quintiles, start = [], 0
    for size in sizes:
        mask = np.zeros(n, dtype=bool)
        mask[order[start : start + size]] = True
        quintiles.append(nan_to_none(audmetric.concordance_cc(truth[mask], pred[mask])))
        start += size

    json.dump(
        {"curve": curve, "thresholds": thresholds, "quintile_sizes": sizes, "quintile_ccc": quintiles},
        sys.stdout,
        allow_nan=False,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare with the committed fixture")
    mode.add_argument("--reference", metavar="INPUT.json", help="print the reject-option reference")
    args = parser.parse_args()
    if args.reference:
        reference(args.reference)
    elif args.check:
        check(fixture())
    else:
        write(fixture())
        print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
