#!/usr/bin/env python3
"""Independent check of an exported emogate serving graph (DESIGN §6).

usage: check_onnx.py MODEL_DIR [INPUTS.npy EXPECTED_DIR [ATOL]]

- onnx.checker accepts model.onnx (full check, with shape inference);
- manifest.json's sha256 matches the file;
- onnxruntime loads it: one input `features` float32 [N, dims], twelve outputs
  {valence,arousal,dominance}_{value,consensus,distribution,entropy} with the contract shapes;
- with INPUTS.npy and EXPECTED_DIR/{output}.npy (written by the Rust reference forward pass):
  every onnxruntime output equals the expected array within ATOL (default 1e-4), and the
  distributions sum to 1 and the entropies equal -sum p ln p.
Prints one JSON object with the largest absolute difference per output.
"""
import hashlib
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

ATTRS = ["valence", "arousal", "dominance"]
KINDS = ["value", "consensus", "distribution", "entropy"]


def fail(msg):
    print(f"check_onnx: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) not in (2, 4, 5):
        fail(__doc__)
    model_dir = sys.argv[1]
    path = os.path.join(model_dir, "model.onnx")
    onnx.checker.check_model(path, full_check=True)
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if sha != manifest["sha256"]:
        fail(f"sha256 {sha} != manifest {manifest['sha256']}")
    dims = manifest["feature_dims"]

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    if [i.name for i in inputs] != ["features"] or inputs[0].type != "tensor(float)" or inputs[0].shape[1] != dims:
        fail(f"unexpected inputs {[(i.name, i.type, i.shape) for i in inputs]}")
    names = [f"{a}_{k}" for a in ATTRS for k in KINDS]
    got_names = [o.name for o in sess.get_outputs()]
    if got_names != names:
        fail(f"outputs {got_names} != contract {names}")
    report = {"onnx_checker": "ok", "sha256": "ok", "opset": manifest["opset"], "outputs": len(names)}

    if len(sys.argv) >= 4:
        x = np.load(sys.argv[2]).astype(np.float32)
        atol = float(sys.argv[4]) if len(sys.argv) == 5 else 1e-4
        outs = dict(zip(names, sess.run(names, {"features": x})))
        n = x.shape[0]
        diffs = {}
        for name in names:
            want = np.load(os.path.join(sys.argv[3], f"{name}.npy"))
            got = outs[name]
            shape = (n, 7) if name.endswith("distribution") else (n,)
            if got.shape != shape:
                fail(f"{name}: shape {got.shape}, expected {shape}")
            want = want.reshape(shape)
            diff = float(np.max(np.abs(got - want)))
            diffs[name] = diff
            if not diff <= atol:
                fail(f"{name}: max |ORT - Rust| = {diff} > {atol}")
        for a in ATTRS:
            p = outs[f"{a}_distribution"]
            if np.max(np.abs(p.sum(axis=1) - 1)) > 1e-5:
                fail(f"{a}_distribution rows do not sum to 1")
            h = -(p * np.log(np.maximum(p, 1e-30))).sum(axis=1)
            if np.max(np.abs(h - outs[f"{a}_entropy"])) > 1e-5:
                fail(f"{a}_entropy is not the entropy of {a}_distribution")
        report["rows"] = n
        report["max_abs_diff"] = diffs
    print(json.dumps(report))


if __name__ == "__main__":
    main()
