#!/usr/bin/env python3
"""Plain Python onnxruntime throughput on a model directory: the reference `emogate bench`
compares its raw inference path with, on the same file, batch size and thread count.

Prints one JSON object: {"records_per_sec", "batch", "threads", "records", "seconds",
"onnxruntime"}. Inputs are deterministic random features; a warm-up pass is excluded.

Usage: ort_bench.py --model DIR [--batch B] [--threads T] [--records N] [--dims D]
"""
import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--records", type=int, default=2048)
    ap.add_argument("--dims", type=int, default=6373)
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if args.threads:
        opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(os.path.join(args.model, "model.onnx"), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    batches = max(1, args.records // args.batch)
    x = rng.standard_normal((args.batch, args.dims)).astype(np.float32)
    sess.run(None, {"features": x})
    start = time.perf_counter()
    for _ in range(batches):
        sess.run(None, {"features": x})
    seconds = time.perf_counter() - start
    records = batches * args.batch
    print(json.dumps({
        "records_per_sec": records / seconds,
        "batch": args.batch,
        "threads": args.threads,
        "records": records,
        "seconds": seconds,
        "onnxruntime": ort.__version__,
    }))


if __name__ == "__main__":
    main()
