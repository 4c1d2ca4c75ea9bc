#!/usr/bin/env python3
"""Throughput of the audio front end: `emogate featurize` against Python opensmile, same files,
same run (docs/benchmarks.md, "Audio front end").

Makes N utterances with espeak-ng (sentences x voices x speeds, converted to 16 kHz mono by
sox), then times, in alternating order, REPEATS times each:
  * `emogate featurize --jobs J` for J in --jobs (a fresh --out each time, so nothing resumes);
  * Python `opensmile.Smile(ComParE_2016, Functionals).process_files(files)` with
    num_workers=1 and with num_workers=max(--jobs) (audinterface's thread pool).
Prints one JSON object: per configuration the best wall time, files/s and real-time factor
(wall seconds / audio seconds; lower is faster), and the Rust/Python ratios.

Usage: featurize_bench.py --emogate target/release/emogate [--files 60] [--jobs 1 2] [--repeats 3]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I cannot believe you did that again, this is wonderful news!",
    "Please leave the package at the front door before noon.",
    "Why would anyone want to stay here all night long?",
    "We should have left an hour ago, now we will surely be late.",
    "That was the best concert I have ever been to in my whole life.",
]
VOICES = ["en", "en-us", "en+f3", "en+m3", "en+f2"]


def make_speech(dirname, n):
    files = []
    for i in range(n):
        raw = os.path.join(dirname, f".raw{i}.wav")
        out = os.path.join(dirname, f"u{i:04d}.wav")
        text = SENTENCES[i % len(SENTENCES)]
        subprocess.run(["espeak-ng", "-v", VOICES[i % len(VOICES)], "-s", str(120 + (i * 7) % 80), "-w", raw, text],
                       check=True)
        subprocess.run(["sox", raw, "-r", "16000", "-c", "1", "-b", "16", out], check=True)
        os.remove(raw)
        files.append(out)
    return files


def time_rust(emogate, audio_dir, jobs, work):
    out = tempfile.mkdtemp(dir=work)
    started = time.perf_counter()
    subprocess.run([emogate, "featurize", "--audio", audio_dir, "--out", out, "--jobs", str(jobs), "--json"],
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    shutil.rmtree(out)
    return seconds


def time_python(files, workers):
    import opensmile
    smile = opensmile.Smile(opensmile.FeatureSet.ComParE_2016, opensmile.FeatureLevel.Functionals,
                            num_workers=workers)
    started = time.perf_counter()
    frame = smile.process_files(files)
    seconds = time.perf_counter() - started
    assert len(frame) == len(files), (len(frame), len(files))
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emogate", required=True)
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import audiofile
    work = tempfile.mkdtemp(prefix="emogate-featurize-bench-")
    try:
        audio = os.path.join(work, "audio")
        os.makedirs(audio)
        files = make_speech(audio, args.files)
        audio_seconds = sum(audiofile.duration(f) for f in files)
        configs = [("rust", j) for j in args.jobs] + [("python", 1), ("python", max(args.jobs))]
        best = {}
        for _ in range(args.repeats):
            for kind, jobs in configs:
                t = time_rust(args.emogate, audio, jobs, work) if kind == "rust" else time_python(files, jobs)
                key = f"{kind}_jobs{jobs}"
                best[key] = min(best.get(key, float("inf")), t)
        result = {
            "files": len(files),
            "audio_seconds": audio_seconds,
            "cores": os.cpu_count(),
            "repeats": args.repeats,
            "configs": {
                k: {"seconds": t, "files_per_sec": len(files) / t, "real_time_factor": t / audio_seconds}
                for k, t in best.items()
            },
        }
        j = max(args.jobs)
        result["rust_over_python_same_threads"] = best["python_jobs%d" % j] / best["rust_jobs%d" % j]
        result["rust_over_python_1_thread"] = best["python_jobs1"] / best["rust_jobs1"]
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
