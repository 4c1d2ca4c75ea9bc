#!/usr/bin/env python3
"""Runs each fuzz target under AFL++ (`cargo afl fuzz`) for a bounded time and reports what it did.

For `make fuzz FUZZ_SECONDS=N`: every target in turn, from its committed seed corpus
(fuzz/corpus/<target>/) into fuzz/out/<target>/, for N seconds (`afl-fuzz -V N`). Afterwards it
reads each run's `fuzzer_stats` and prints one line per target (execs, execs/s, corpus size,
crashes, hangs), writes fuzz/out/summary.json, and exits 1 if any target saved a crash or a hang
(the inputs are under fuzz/out/<target>/default/crashes/ and hangs/: replay one with
`fuzz/target/release/<target> < FILE`).

Usage: fuzz_run.py --seconds N TARGET...
"""
import argparse
import json
import os
import subprocess
import sys

FUZZ = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz"))


def stats(path):
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, required=True)
    ap.add_argument("targets", nargs="+")
    args = ap.parse_args()
    env = dict(os.environ, AFL_NO_UI="1", AFL_SKIP_CPUFREQ="1", AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES="1",
               AFL_QUIET="1")
    summary = {}
    for target in args.targets:
        out_dir = os.path.join(FUZZ, "out", target)
        corpus = os.path.join(FUZZ, "corpus", target)
        binary = os.path.join(FUZZ, "target", "release", target)
        # Resume from an earlier run's queue when there is one ("-i -"), else start from the seeds.
        seeds = "-" if os.path.exists(os.path.join(out_dir, "default", "fuzzer_stats")) else corpus
        cmd = ["cargo", "afl", "fuzz", "-V", str(args.seconds), "-i", seeds, "-o", out_dir, "--", binary]
        print("+", " ".join(cmd), flush=True)
        os.makedirs(os.path.dirname(out_dir), exist_ok=True)
        log_path = out_dir + ".log"
        with open(log_path, "w") as log:
            done = subprocess.run(cmd, cwd=FUZZ, env=env, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            with open(log_path) as log:
                sys.exit(f"afl-fuzz failed for {target} (exit {done.returncode}); the end of {log_path}:\n"
                         + "".join(log.readlines()[-25:]))
        s = stats(os.path.join(out_dir, "default", "fuzzer_stats"))
        summary[target] = {
            "seconds": int(s.get("run_time", 0)),
            "execs": int(s.get("execs_done", 0)),
            "execs_per_sec": float(s.get("execs_per_sec", 0)),
            "corpus": int(s.get("corpus_count", 0)),
            "crashes": int(s.get("saved_crashes", 0)),
            "hangs": int(s.get("saved_hangs", 0)),
            "stability": s.get("stability", ""),
        }
        r = summary[target]
        print(f"{target:<20} {r['seconds']:>5} s {r['execs']:>10,} execs ({r['execs_per_sec']:,.0f}/s) "
              f"corpus {r['corpus']:>5} crashes {r['crashes']} hangs {r['hangs']}", flush=True)
    with open(os.path.join(FUZZ, "out", "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    total = sum(r["execs"] for r in summary.values())
    bad = {t: r for t, r in summary.items() if r["crashes"] or r["hangs"]}
    print(f"total {total:,} execs over {len(summary)} targets; "
          + ("no crashes, no hangs" if not bad else f"FINDINGS in {', '.join(bad)}"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
