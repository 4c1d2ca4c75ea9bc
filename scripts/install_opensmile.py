#!/usr/bin/env python3
"""Installs openSMILE's C API library and configuration files from the Python registry's wheel.

`emogate featurize` loads `libSMILEapi.so` at run time (src/featurize/smile.rs) and runs the
ComParE_2016 configuration shipped beside it. The `opensmile` wheel carries both, under
`opensmile/core/bin/<platform>/` and `opensmile/core/config/`; this script downloads the wheel
with pip and copies the library and the whole config tree into DEST:

    DEST/libSMILEapi.so
    DEST/config/compare/ComParE_2016.conf, DEST/config/shared/..., ...

The install is written to DEST.part and renamed, so an interrupted run leaves no half folder.

Usage: install_opensmile.py --version 2.6.0 --dest .cache/opensmile/2.6.0 [--wheel-dir DIR]
"""
import argparse
import os
import platform
import shutil
import sys
import zipfile

from install_ort import download_wheel

LIBRARY = "libSMILEapi.so"
CONFIG_PREFIX = "opensmile/core/config/"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", required=True)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--wheel-dir", default=None, help="where to keep the downloaded wheel (default: a temp dir)")
    args = ap.parse_args()
    if platform.system() != "Linux":
        sys.exit(f"emogate featurize loads {LIBRARY}; this installer handles Linux wheels only")

    wheel = download_wheel("opensmile", args.version, args.wheel_dir)
    staging = args.dest.rstrip("/") + ".part"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    library_member = f"opensmile/core/bin/manylinux_2_17_{platform.machine().lower()}/{LIBRARY}"
    configs = 0
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        if library_member not in names:
            sys.exit(f"{wheel} has no {library_member}")
        for name in names:
            if name == library_member:
                target = os.path.join(staging, LIBRARY)
            elif name.startswith(CONFIG_PREFIX) and not name.endswith("/"):
                target = os.path.join(staging, "config", name[len(CONFIG_PREFIX):])
                configs += 1
            else:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    if not os.path.isfile(os.path.join(staging, "config", "compare", "ComParE_2016.conf")):
        sys.exit(f"{wheel} has no config/compare/ComParE_2016.conf")
    shutil.rmtree(args.dest, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.dest)), exist_ok=True)
    os.replace(staging, args.dest)
    print(f"installed {LIBRARY} and {configs} configuration files into {args.dest}")


if __name__ == "__main__":
    main()
