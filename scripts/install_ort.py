#!/usr/bin/env python3
"""Installs the ONNX Runtime shared library from the Python registry's wheel.

emogate loads ONNX Runtime dynamically (the `ort` crate's `load-dynamic`), so all it needs
is `libonnxruntime.so.<version>` and, beside it, `libonnxruntime_providers_shared.so`
(which execution providers such as CUDA load). The `onnxruntime` wheel (or
`onnxruntime-gpu` for the CUDA build) carries both under `onnxruntime/capi/`; this script
downloads the wheel with pip and copies just those files into DEST.

Usage: install_ort.py --version 1.31.1 --dest .cache/onnxruntime/1.31.1 [--package onnxruntime-gpu]
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile


def download_wheel(package, version, wheel_dir=None):
    """The path of the `package==version` binary wheel for this platform, downloaded with pip
    into `wheel_dir` (a temp dir when None) unless it is there already."""
    wheel_dir = wheel_dir or tempfile.mkdtemp(prefix="emogate-wheel-")
    os.makedirs(wheel_dir, exist_ok=True)
    dist = package.replace("-", "_")
    pattern = os.path.join(wheel_dir, f"{dist}-{version}-*.whl")
    wheels = glob.glob(pattern)
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               f"{package}=={version}", "-d", wheel_dir]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        wheels = glob.glob(pattern)
    if not wheels:
        sys.exit(f"no {package} {version} wheel found in {wheel_dir}")
    return wheels[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", required=True)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--package", default="onnxruntime")
    ap.add_argument("--wheel-dir", default=None, help="where to keep the downloaded wheel (default: a temp dir)")
    args = ap.parse_args()

    wheels = [download_wheel(args.package, args.version, args.wheel_dir)]

    wanted = {f"libonnxruntime.so.{args.version}", "libonnxruntime_providers_shared.so"}
    # The GPU wheel also carries the CUDA (and TensorRT) provider libraries.
    optional_prefixes = ("libonnxruntime_providers_",)
    os.makedirs(args.dest, exist_ok=True)
    found = set()
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in wheel.namelist():
            base = os.path.basename(name)
            if not name.startswith("onnxruntime/capi/"):
                continue
            if base in wanted or (base.startswith(optional_prefixes) and base.endswith(".so")):
                target = os.path.join(args.dest, base)
                with wheel.open(name) as src, open(target + ".part", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(target + ".part", target)
                found.add(base)
    missing = wanted - found
    if missing:
        sys.exit(f"{wheels[0]} does not contain {sorted(missing)}")
    print(f"installed {sorted(found)} into {args.dest}")


if __name__ == "__main__":
    main()
