"""Wheels for a machine that cannot reach a package index: `python launch/wheelhouse.py OUT`.

Resolves livt-jax's dependencies for CPython 3.12 on manylinux x86-64 (the lent
GPU machines' image) with pip's resolver, drops every distribution the image
already holds (`gpu_image_packages.txt`), and downloads the rest into OUT,
pinned, together with `OUT/requirements.txt` naming exactly those pins (and
`OUT/from_image.txt`, the distributions it relies on the image for). The GPU
kit (`launch/device_bench.sh`) installs them with
`pip install --no-index --no-deps --find-links OUT -r OUT/requirements.txt`,
so the image's own jax, torch, numpy, ... are never replaced.

Distributions published as source only are built into pure wheels first
(`SOURCE_ONLY`); the run fails naming any other that has no wheel.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_PACKAGES = Path(__file__).with_name("gpu_image_packages.txt")
PYTHON_VERSION = "3.12"
# pip matches manylinux tags exactly: list every glibc level the wheels use.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_28_x86_64", "manylinux1_x86_64",
             "manylinux_2_5_x86_64", "manylinux2010_x86_64", "manylinux_2_12_x86_64")
# tensorflow-datasets needs `promise`, which PyPI has as an sdist only (pure Python).
SOURCE_ONLY = ("promise",)


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: Path = IMAGE_PACKAGES) -> set[str]:
    """Normalised names listed in ``path`` (one a line, '#' comments)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {normalize(line) for line in lines if line}


def target_args() -> list[str]:
    """pip options that select CPython 3.12 manylinux x86-64 wheels."""
    args = ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--only-binary=:all:"]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    return args


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def resolve(project: Path, find_links: Path) -> dict[str, str]:
    """{normalised name: version} of everything ``pip install project`` would bring (3.12)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip("install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report),
            "--target", str(Path(tmp) / "target"), "--find-links", str(find_links),
            *target_args(), str(project))
        installs = json.loads(report.read_text())["install"]
    return {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}


def missing_from_image(resolved: dict[str, str], image: set[str], project_name: str) -> dict[str, str]:
    """The resolved distributions the image lacks (the project itself excluded)."""
    skip = image | {normalize(project_name)}
    return {name: version for name, version in sorted(resolved.items()) if name not in skip}


def wheel_name(path: Path) -> str:
    """Normalised distribution name of a wheel file."""
    return normalize(path.name.split("-", 1)[0])


def build(out: Path, project: Path = ROOT) -> dict[str, str]:
    """Fills ``out`` with the wheels the image lacks; returns {name: version}."""
    out.mkdir(parents=True, exist_ok=True)
    for name in SOURCE_ONLY:
        if not any(wheel_name(p) == name for p in out.glob("*.whl")):
            pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), name)
    resolved = resolve(project, out)
    needed = missing_from_image(resolved, image_packages(), "livt-jax")
    pins = [f"{name}=={version}" for name, version in needed.items()]
    pip("download", "--quiet", "--no-deps", "--dest", str(out), "--find-links", str(out),
        *target_args(), *pins)
    for stale in out.glob("*.whl"):  # two versions of one package would stop the install
        version = stale.name.split("-")[1]
        if needed.get(wheel_name(stale)) != version:
            stale.unlink()
    (out / "requirements.txt").write_text("".join(pin + "\n" for pin in pins))
    from_image = sorted(set(resolved) - set(needed) - {"livt-jax"})
    (out / "from_image.txt").write_text("".join(name + "\n" for name in from_image))
    return needed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the wheels (created)")
    args = parser.parse_args(argv)
    needed = build(args.out)
    wheels = sorted(args.out.glob("*.whl"))
    missing = set(needed) - {wheel_name(w) for w in wheels}
    if missing:
        raise SystemExit(f"no wheel downloaded for {sorted(missing)} in {args.out}")
    size = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB in {args.out}: {', '.join(needed)}")


if __name__ == "__main__":
    main()
