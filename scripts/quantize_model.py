"""int8 dynamic quantisation of a serving model, with its cost and effect measured in one run.

Quantises the MatMul weights of a model directory's `model.onnx` with
`onnxruntime.quantization.quantize_dynamic` (int8 weights, activations quantised per batch at
run time) and writes a loadable model directory (model.onnx + manifest.json with the new
sha256 and a version suffix; thresholds copied from the f32 model). Then, on one split of an
`emogate synth` corpus, it compares the two graphs under plain Python onnxruntime:

* decision agreement: the fraction of records whose three per-attribute accept/reject
  decisions (entropy <= the f32 manifest's thresholds at `--coverage`) are the same;
* mean |entropy difference| and mean |value difference|;
* speed: both sessions timed alternately on the same batches (`--repeats` rounds), the
  ratio of the median round times, so machine load hits both alike.

`--scope encoders` quantises only the VAE encoder layers (enc*, mu, logvar: 12 of the 40
million multiply-adds per record at S=100); `--scope all` every MatMul with a constant
weight (ER heads on the latent samples and STL regressors too). Prints one JSON object.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from mc_study import ATTRIBUTES, split_rows, thresholds

ENCODER_WEIGHT = re.compile(r"_(enc\d+|mu|logvar)_w$")


def matmul_nodes(model_path, scope):
    graph = onnx.load(model_path, load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    nodes = []
    for n in graph.node:
        if n.op_type != "MatMul" or n.input[1] not in weights:
            continue
        if scope == "all" or ENCODER_WEIGHT.search(n.input[1]):
            nodes.append(n.name)
    return nodes


def write_quantized(src, out, scope, per_channel):
    os.makedirs(out, exist_ok=True)
    model_path = os.path.join(out, "model.onnx")
    nodes = matmul_nodes(os.path.join(src, "model.onnx"), scope)
    quantize_dynamic(
        os.path.join(src, "model.onnx"),
        model_path,
        nodes_to_quantize=nodes,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
    )
    with open(model_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(src, "manifest.json")) as f:
        manifest = json.load(f)
    manifest["sha256"] = sha
    manifest["version"] = f"{manifest['version']}+int8-{scope}"
    manifest["description"] += f"; int8 dynamic quantisation ({scope}, {len(nodes)} MatMuls) by scripts/quantize_model.py"
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return nodes


def session(model_dir, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(os.path.join(model_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"])


def run(sess, features, batch):
    names = [f"{a}_{k}" for a in ATTRIBUTES for k in ("entropy", "value")]
    out = {n: [] for n in names}
    for start in range(0, len(features), batch):
        x = np.ascontiguousarray(features[start : start + batch], dtype=np.float32)
        for n, v in zip(names, sess.run(names, {"features": x})):
            out[n].append(v.reshape(-1))
    return {n: np.concatenate(v) for n, v in out.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="models/default")
    p.add_argument("--out", required=True)
    p.add_argument("--scope", choices=["encoders", "all"], default="encoders")
    p.add_argument("--per-channel", action="store_true")
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--coverage", type=float, default=0.6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--timing-records", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    nodes = write_quantized(args.model, args.out, args.scope, args.per_channel)
    rows = np.sort(split_rows(args.corpus, args.split))
    features = np.load(os.path.join(args.corpus, "features.npy"), mmap_mode="r")[rows]
    f32, int8 = session(args.model, args.threads), session(args.out, args.threads)
    a, b = run(f32, features, args.batch), run(int8, features, args.batch)
    _, th = thresholds(args.model, args.coverage)
    da = np.stack([a[f"{x}_entropy"] <= th[i] for i, x in enumerate(ATTRIBUTES)], axis=1)
    db = np.stack([b[f"{x}_entropy"] <= th[i] for i, x in enumerate(ATTRIBUTES)], axis=1)

    timing = np.ascontiguousarray(features[: args.timing_records])
    rounds = {"f32": [], "int8": []}
    for _ in range(args.repeats):
        for name, sess in (("f32", f32), ("int8", int8)):
            t0 = time.perf_counter()
            run(sess, timing, args.batch)
            rounds[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in rounds.items()}
    print(
        json.dumps(
            {
                "model": args.model,
                "quantized": args.out,
                "scope": args.scope,
                "per_channel": args.per_channel,
                "quantized_matmuls": len(nodes),
                "size_mib": {
                    "f32": os.path.getsize(os.path.join(args.model, "model.onnx")) / 2**20,
                    "int8": os.path.getsize(os.path.join(args.out, "model.onnx")) / 2**20,
                },
                "split": args.split,
                "records": int(len(features)),
                "coverage": args.coverage,
                "agree_records": float(np.mean(np.all(da == db, axis=1))),
                "agree_per_attribute": dict(zip(ATTRIBUTES, np.mean(da == db, axis=0).tolist())),
                "mean_abs_entropy_diff": float(np.mean([np.abs(a[f"{x}_entropy"] - b[f"{x}_entropy"]).mean() for x in ATTRIBUTES])),
                "mean_abs_value_diff": float(np.mean([np.abs(a[f"{x}_value"] - b[f"{x}_value"]).mean() for x in ATTRIBUTES])),
                "timing_records": int(len(timing)),
                "batch": args.batch,
                "threads": args.threads,
                "seconds_median": med,
                "records_per_sec": {k: len(timing) / v for k, v in med.items()},
                "int8_speedup": med["f32"] / med["int8"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
