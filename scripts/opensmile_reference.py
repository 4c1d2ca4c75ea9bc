#!/usr/bin/env python3
"""The Python openSMILE reference for the Rust audio front end (tests/featurize_audio.rs).

Runs `opensmile.Smile(FeatureSet.ComParE_2016, FeatureLevel.Functionals)` (opensmile 2.6.0,
default options: the file's own sample rate, channel 0) on each file and writes one JSON
object: {"names": [...6373], "rows": {file: [...]}, "seconds": wall time of the extraction,
"audio_seconds": summed duration}. With --resample, files are resampled to 16 kHz and mixed
down first (Smile(..., sampling_rate=16000, resample=True, mixdown=True)), as `emogate
featurize` does for files at other rates.

Usage: opensmile_reference.py --out ref.json [--resample] FILE...
"""
import argparse
import json
import time

import audiofile
import opensmile


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--resample", action="store_true")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    extra = dict(sampling_rate=16000, resample=True, mixdown=True) if args.resample else {}
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016,
        feature_level=opensmile.FeatureLevel.Functionals,
        **extra,
    )
    rows = {}
    started = time.perf_counter()
    for path in args.files:
        frame = smile.process_file(path)
        rows[path] = [float(v) for v in frame.values[0]]
    seconds = time.perf_counter() - started
    audio_seconds = sum(audiofile.duration(p) for p in args.files)
    with open(args.out, "w") as f:
        json.dump({"names": list(smile.feature_names), "rows": rows, "seconds": seconds,
                   "audio_seconds": audio_seconds}, f)


if __name__ == "__main__":
    main()
