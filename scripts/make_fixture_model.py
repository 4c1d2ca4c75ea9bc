#!/usr/bin/env python3
"""Builds a random-weight VAE-ER serving graph that honours the model contract (DESIGN §6).

The graph has the real method's structure for each attribute (valence, arousal, dominance):

    x --min-max scale to [0,1] (clipped)--> encoder (ReLU dense layers) --> mu, log sigma^2
    z = mu + exp(0.5 log sigma^2) * eps        for the fixed noise bank eps [S, latent]
    ER (tanh dense layers) on every z --> consensus (linear) and softmax over 7 bins
    averaged over the S samples --> {a}_consensus [N], {a}_distribution [N,7]
    {a}_entropy = -sum p ln p                   (nats)
    {a}_value = STL regressor (tanh dense layers) on the scaled features, mapped to 1..7

Weights are random (seeded), so predictions mean nothing: the fixture exists so the
inference path, parity tests and benchmarks have a real ONNX graph before a trained model
exists. `--size full` builds the paper-sized shapes (encoder 3x512, latent 256, ER 4x128,
S=100) for benchmarks; `--size fixture` (default) keeps the file small enough to commit.

Usage: make_fixture_model.py --out DIR [--size fixture|full] [--seed N] [--mc-samples S]
Writes DIR/model.onnx and DIR/manifest.json (with the file's sha256).
"""
import argparse
import hashlib
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ATTRIBUTES = ["valence", "arousal", "dominance"]
FEATURE_DIMS = 6373
BINS = 7
OPSET = 18

SIZES = {
    # encoder hidden widths, latent width, ER hidden widths, STL hidden widths
    "fixture": dict(encoder=[16, 16], latent=256, er=[16, 16], stl=[8], mc_samples=100),
    "full": dict(encoder=[512, 512, 512], latent=256, er=[128, 128, 128, 128], stl=[256, 256], mc_samples=100),
}


class GraphBuilder:
    def __init__(self, rng):
        self.rng = rng
        self.nodes = []
        self.inits = []

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def dense(self, x, fan_in, fan_out, prefix, activation=None):
        w = (self.rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / (fan_in + fan_out))).astype(np.float32)
        b = (self.rng.standard_normal(fan_out) * 0.05).astype(np.float32)
        y = self.node("MatMul", [x, self.const(f"{prefix}.w", w)], f"{prefix}.mm")
        y = self.node("Add", [y, self.const(f"{prefix}.b", b)], f"{prefix}.add")
        if activation:
            y = self.node(activation, [y], f"{prefix}.{activation.lower()}")
        return y


def build(size, seed, mc_samples):
    cfg = SIZES[size]
    rng = np.random.default_rng(seed)
    g = GraphBuilder(rng)
    lo = (rng.standard_normal(FEATURE_DIMS) * 0.1 - 1.0).astype(np.float32)
    hi = (lo + 2.0 + rng.random(FEATURE_DIMS)).astype(np.float32)
    g.const("scale.lo", lo)
    g.const("scale.inv_range", (1.0 / (hi - lo)).astype(np.float32))
    x = g.node("Sub", ["features", "scale.lo"], "scale.sub")
    x = g.node("Mul", [x, "scale.inv_range"], "scale.mul")
    x = g.node("Clip", [x, g.const("scale.zero", np.float32(0)), g.const("scale.one", np.float32(1))], "scaled")
    latent = cfg["latent"]
    eps = rng.standard_normal((mc_samples, latent)).astype(np.float32)
    g.const("noise_bank", eps)
    g.const("shape.n_s_latent", np.array([-1, latent], dtype=np.int64))
    g.const("shape.n_s", np.array([-1, mc_samples], dtype=np.int64))
    g.const("shape.n_s_bins", np.array([-1, mc_samples, BINS], dtype=np.int64))
    g.const("axis1", np.array([1], dtype=np.int64))
    g.const("half", np.float32(0.5))
    g.const("tiny", np.float32(1e-12))
    g.const("likert.scale", np.float32(3.0))
    g.const("likert.mid", np.float32(4.0))
    outputs = []
    for a in ATTRIBUTES:
        h, width = x, FEATURE_DIMS
        for i, w in enumerate(cfg["encoder"]):
            h = g.dense(h, width, w, f"{a}.enc{i}", "Relu")
            width = w
        mu = g.dense(h, width, latent, f"{a}.mu")
        logvar = g.dense(h, width, latent, f"{a}.logvar")
        std = g.node("Exp", [g.node("Mul", [logvar, "half"], f"{a}.halflogvar")], f"{a}.std")
        mu3 = g.node("Unsqueeze", [mu, "axis1"], f"{a}.mu3")
        std3 = g.node("Unsqueeze", [std, "axis1"], f"{a}.std3")
        z = g.node("Add", [mu3, g.node("Mul", [std3, "noise_bank"], f"{a}.scaled_noise")], f"{a}.z3")
        z = g.node("Reshape", [z, "shape.n_s_latent"], f"{a}.z")
        h, width = z, latent
        for i, w in enumerate(cfg["er"]):
            h = g.dense(h, width, w, f"{a}.er{i}", "Tanh")
            width = w
        consensus = g.dense(h, width, 1, f"{a}.consensus_head")
        consensus = g.node("Reshape", [consensus, "shape.n_s"], f"{a}.consensus_ns")
        g.node("ReduceMean", [consensus, "axis1"], f"{a}_consensus", keepdims=0)
        logits = g.dense(h, width, BINS, f"{a}.soft_head")
        probs = g.node("Softmax", [logits], f"{a}.probs", axis=-1)
        probs = g.node("Reshape", [probs, "shape.n_s_bins"], f"{a}.probs_ns")
        dist = g.node("ReduceMean", [probs, "axis1"], f"{a}_distribution", keepdims=0)
        logp = g.node("Log", [g.node("Max", [dist, "tiny"], f"{a}.dist_safe")], f"{a}.logp")
        plogp = g.node("Mul", [dist, logp], f"{a}.plogp")
        g.node("Neg", [g.node("ReduceSum", [plogp, "axis1"], f"{a}.sum_plogp", keepdims=0)], f"{a}_entropy")
        h, width = x, FEATURE_DIMS
        for i, w in enumerate(cfg["stl"]):
            h = g.dense(h, width, w, f"{a}.stl{i}", "Tanh")
            width = w
        v = g.dense(h, width, 1, f"{a}.stl_out", "Tanh")
        v = g.node("Add", [g.node("Mul", [v, "likert.scale"], f"{a}.stl_scaled"), "likert.mid"], f"{a}.stl_likert")
        g.node("Squeeze", [v, "axis1"], f"{a}_value")
        outputs += [
            helper.make_tensor_value_info(f"{a}_value", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(f"{a}_consensus", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(f"{a}_distribution", TensorProto.FLOAT, ["N", BINS]),
            helper.make_tensor_value_info(f"{a}_entropy", TensorProto.FLOAT, ["N"]),
        ]
    graph = helper.make_graph(
        g.nodes,
        "emogate_vae_er_fixture",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", FEATURE_DIMS])],
        outputs,
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="emogate-fixture")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model, cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", choices=sorted(SIZES), default="fixture")
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--mc-samples", type=int, default=None)
    args = ap.parse_args()
    mc = args.mc_samples or SIZES[args.size]["mc_samples"]
    model, cfg = build(args.size, args.seed, mc)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "model.onnx")
    data = model.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    manifest = {
        "id": f"emogate-random-{args.size}",
        "version": f"seed{args.seed}",
        "created": "2026-11-25T00:00:00Z",
        "opset": OPSET,
        "sha256": hashlib.sha256(data).hexdigest(),
        "feature_set": "ComParE_2016",
        "feature_dims": FEATURE_DIMS,
        "mc_samples": mc,
        "latent_dims": cfg["latent"],
        "noise_bank": "gaussian",
        "attributes": ATTRIBUTES,
        "training": {
            "corpus_id": "none (random weights)",
            "corpus_hash": "",
            "command": f"scripts/make_fixture_model.py --out {args.out} --size {args.size} --seed {args.seed} --mc-samples {mc}",
            "hyperparameters": {"architecture": cfg},
        },
        "metrics": {},
        "thresholds": [],
        "description": "Random-weight graph with the serving contract's structure; for tests and benchmarks only. Its predictions mean nothing.",
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {path} ({len(data)} bytes, sha256 {manifest['sha256']})")


if __name__ == "__main__":
    main()
