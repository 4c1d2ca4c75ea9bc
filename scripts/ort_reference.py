#!/usr/bin/env python3
"""Runs a serving graph with Python onnxruntime: the independent reference for emogate.

Reads N rows of float32 features (raw little-endian, row-major, DIMS per row), runs
DIR/model.onnx on the CPU provider, and writes the twelve contract outputs concatenated in
contract order (valence, arousal, dominance; value, consensus, distribution, entropy) as raw
little-endian float32.

Usage: ort_reference.py --model DIR --input FILE --dims D --out FILE [--threads T]
"""
import argparse
import os

import numpy as np
import onnxruntime as ort

ATTRIBUTES = ["valence", "arousal", "dominance"]
KINDS = ["value", "consensus", "distribution", "entropy"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--dims", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    opts = ort.SessionOptions()
    if args.threads:
        opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(os.path.join(args.model, "model.onnx"), opts, providers=["CPUExecutionProvider"])
    x = np.fromfile(args.input, dtype="<f4").reshape(-1, args.dims)
    names = [f"{a}_{k}" for a in ATTRIBUTES for k in KINDS]
    outputs = sess.run(names, {"features": x})
    np.concatenate([o.astype("<f4").ravel() for o in outputs]).tofile(args.out)


if __name__ == "__main__":
    main()
