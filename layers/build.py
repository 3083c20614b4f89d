#!/usr/bin/env python3
"""Build the Lambda layer (build/layer/python) from requirements.txt without Docker; cached, idempotent.

pip installs manylinux x86_64 wheels for CPython 3.12 (the functions' runtime) into build/layer/python,
then this script removes what the Lambda runtime already has (boto3, botocore and their dependencies)
and what nothing imports at run time (tests, headers, Cython sources, type stubs, pyarrow's Flight
libraries, duplicate copies of shared libraries). A stamp (a hash of requirements.txt and this file)
makes a second run with nothing changed a no-op.

    python layers/build.py            # build if stale
    python layers/build.py --force    # rebuild
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements.txt"
OUT = ROOT / "build" / "layer"
STAMP_NAME = ".stamp"

PYTHON_VERSION = "3.12"
# manylinux2014 (glibc 2.17) wheels and the newer manylinux_2_28 ones pyarrow ships: both run on the python3.12
# runtime (Amazon Linux 2023, glibc 2.34).
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")

# Distributions the python3.12 Lambda runtime provides; pip pulls them in (aws-xray-sdk needs botocore).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "python_dateutil", "six", "urllib3")

# Never imported at run time.
STRIP_DIR_NAMES = {"__pycache__", "tests", "test"}
STRIP_SUFFIXES = {".pyc", ".pyi", ".pyx", ".pxd", ".pxi", ".h", ".hpp", ".c", ".cc", ".cpp", ".a"}
STRIP_GLOBS = (
    "pyarrow/include",  # C++ headers, for building extensions against pyarrow
    "pyarrow/includes",  # Cython declarations
    "pyarrow/src",  # C++ sources of libarrow_python
    "pyarrow/conftest.py",
    # Wheels hold three real copies of each libarrow_python* library (no symlinks in a zip); the loader only
    # opens the SONAME one (libarrow_python.so.2600), so the unversioned and fully versioned copies go.
    "pyarrow/libarrow_python*.so",
    "pyarrow/libarrow_python*.so.*.*.*",
    # Arrow Flight RPC (31 MB): only pyarrow.flight loads it, and nothing here imports pyarrow.flight.
    "pyarrow/libarrow_flight.so.*",
    "pyarrow/libarrow_python_flight.so*",
    "pyarrow/_flight.*.so",
    "pyarrow/_pyarrow_cpp_tests.*.so",
    "adbc_driver_manager/toml++",  # vendored C++ headers
    "adbc_driver_manager/arrow-adbc",  # C headers
    "*-stubs",  # type stubs (wrapt-stubs)
    "bin",  # console scripts (jmespath's jp.py): Lambda runs none
)


def requirements_key() -> str:
    """What the built layer depends on: requirements.txt and this script (its flags and strip rules)."""
    digest = hashlib.sha256()
    digest.update(REQUIREMENTS.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def is_current(out: Path = OUT) -> bool:
    """True when out holds a layer built from the current requirements.txt and script."""
    stamp = out / STAMP_NAME
    return (out / "python").is_dir() and stamp.is_file() and stamp.read_text().strip() == requirements_key()


def tree_size(path: Path) -> int:
    """Bytes of the regular files under path (what Lambda counts toward its unzipped limit)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _remove_distribution(site: Path, name: str) -> None:
    """Delete an installed distribution: the top-level entries its RECORD lists, then its dist-info."""
    for info in site.glob("*.dist-info"):
        if _normalize(info.name[: -len(".dist-info")].rsplit("-", 1)[0]) != _normalize(name):
            continue
        record = info / "RECORD"
        lines = record.read_text().splitlines() if record.is_file() else []
        for rel in {line.split(",", 1)[0] for line in lines}:
            if rel and not rel.startswith(".."):
                top = site / Path(rel).parts[0]
                if top != info:
                    _remove(top)
        _remove(info)


def strip(site: Path) -> None:
    """Remove what the runtime provides and what is never imported (see the module docstring)."""
    for name in RUNTIME_PROVIDED:
        _remove_distribution(site, name)
    for pattern in STRIP_GLOBS:
        for path in sorted(site.glob(pattern)):
            _remove(path)
    # Directories first (deepest last is fine: rmtree takes the subtree), then single files.
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts)):
        if not path.exists():
            continue
        if path.is_dir() and path.name in STRIP_DIR_NAMES and path.parent != site:
            _remove(path)
        elif path.is_file() and path.suffix in STRIP_SUFFIXES:
            _remove(path)


def build(out: Path = OUT, force: bool = False) -> Path:
    """Build the layer into out unless it is current; return out."""
    if not force and is_current(out):
        print(f"layer up to date: {out.relative_to(ROOT)} ({tree_size(out / 'python') / 1e6:.1f} MB)")
        return out
    staging = out.with_name(out.name + ".tmp")
    _remove(staging)
    site = staging / "python"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    cmd += ["--implementation", "cp", "--python-version", PYTHON_VERSION, "--only-binary=:all:"]
    cmd += ["--target", str(site), "-r", str(REQUIREMENTS)]
    print("building layer:", " ".join(cmd[2:]))
    subprocess.run(cmd, check=True)
    before = tree_size(site)
    strip(site)
    after = tree_size(site)
    (staging / STAMP_NAME).write_text(requirements_key() + "\n")
    _remove(out)
    staging.rename(out)
    print(
        f"layer built: {out.relative_to(ROOT)}: {before / 1e6:.1f} MB installed, {after / 1e6:.1f} MB after stripping"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the layer is current")
    args = parser.parse_args()
    build(force=args.force)


if __name__ == "__main__":
    main()
