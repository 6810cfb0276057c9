"""Wheels for a machine that cannot reach a package index: `python launch/wheelhouse.py OUT`.

Resolves livt-jax's dependencies for CPython 3.12 on manylinux x86-64 (the lent
GPU machines' image) with pip's resolver and downloads into OUT a wheel for
every distribution the install may need from it, walking requirements from
livt-jax: each one the image lacks (`gpu_image_packages.txt`), with its own
requirements in turn (e.g. the fsspec that the carried gcsfs pins); and each
one the image holds that a requirement bounds from below (orbax-checkpoint>=
0.11.30, ...), unless the image's recorded version satisfies the bound, as an
upgrade candidate for an image whose version may be too old. Never the image's
own jax, jaxlib and torch, which the kit measures and never replaces.
`OUT/requirements.txt` holds livt-jax's own requirements (setup.py's, with
their bounds) and `OUT/from_image.txt` the distributions left to the image.
The GPU kit (`launch/device_bench.sh`) installs with
`pip install --no-index --find-links OUT -r OUT/requirements.txt` into an
environment over the image's packages, so pip keeps every image package that
satisfies its requirements and takes from OUT only what is missing or too old.

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

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
IMAGE_PACKAGES = Path(__file__).with_name("gpu_image_packages.txt")
PROJECT = "livt-jax"
PYTHON_VERSION = "3.12"
# Environment markers of the image (CPython 3.12, Linux x86-64), for requirements' markers.
TARGET_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "os_name": "posix",
              "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}
# The image's own: the kit measures these and refuses to change them (device_bench.sh).
NEVER_REPLACED = frozenset({"jax", "jaxlib", "torch"})
# pip matches manylinux tags exactly: list every glibc level the wheels use.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_28_x86_64", "manylinux1_x86_64",
             "manylinux_2_5_x86_64", "manylinux2010_x86_64", "manylinux_2_12_x86_64")
# tensorflow-datasets needs `promise`, which PyPI has as an sdist only (pure Python).
SOURCE_ONLY = ("promise",)


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_image_list(path: Path = IMAGE_PACKAGES) -> dict[str, str | None]:
    """{normalised name: version or None (unknown)} from ``path`` (NAME or NAME==VERSION a
    line, '#' comments)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    entries = (line.partition("==") for line in lines if line)
    return {normalize(name.strip()): version.strip() or None for name, _, version in entries}


def image_packages(path: Path = IMAGE_PACKAGES) -> set[str]:
    """Normalised names of the distributions the image holds."""
    return set(read_image_list(path))


def target_args() -> list[str]:
    """pip options that select CPython 3.12 manylinux x86-64 wheels."""
    args = ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--only-binary=:all:"]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    return args


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def resolve(project: Path, find_links: Path) -> dict[str, dict]:
    """{normalised name: core metadata (name, version, requires_dist)} of everything
    ``pip install project`` would bring on CPython 3.12 manylinux x86-64."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip("install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report),
            "--target", str(Path(tmp) / "target"), "--find-links", str(find_links),
            *target_args(), str(project))
        installs = json.loads(report.read_text())["install"]
    return {normalize(i["metadata"]["name"]): i["metadata"] for i in installs}


def requirements_of(metadata: dict, extras: frozenset[str] = frozenset()) -> list[Requirement]:
    """The distribution's requirements that apply on the image (with ``extras`` requested)."""
    reqs = [Requirement(text) for text in metadata.get("requires_dist") or []]
    envs = [{**TARGET_ENV, "extra": extra} for extra in sorted(extras) or [""]]
    return [r for r in reqs if r.marker is None or any(r.marker.evaluate(e) for e in envs)]


def has_lower_bound(req: Requirement) -> bool:
    """True when ``req`` excludes old releases (>=, >, ==, ~=, ===)."""
    return any(spec.operator in (">=", ">", "==", "~=", "===") for spec in req.specifier)


def carried(resolved: dict[str, dict], image: dict[str, str | None],
            project_name: str) -> dict[str, str]:
    """{name: version} to carry. Walking requirements from the project: every distribution
    the image lacks (and, in turn, its requirements), and every one it holds that a
    requirement bounds from below unless the image's recorded version satisfies it (an
    upgrade candidate: of its requirements only those of the extras asked for are followed,
    e.g. etils[epath-gcs] -> gcsfs; the image's others are assumed to fit it).
    ``image``: {name: recorded version or None}; NEVER_REPLACED are never carried."""
    carry: dict[str, str] = {}
    todo, seen = [(normalize(project_name), frozenset(), False)], set()
    while todo:
        name, extras, extras_only = todo.pop()
        if (name, extras, extras_only) in seen:
            continue
        seen.add((name, extras, extras_only))
        reqs = requirements_of(resolved[name], extras)
        if extras_only:
            base = {str(r) for r in requirements_of(resolved[name])}
            reqs = [r for r in reqs if str(r) not in base]
        for req in reqs:
            dep = normalize(req.name)
            if dep in NEVER_REPLACED:
                continue
            held = dep in image
            if not held or req.extras:
                todo.append((dep, frozenset(req.extras), held))
            if held and (not has_lower_bound(req) or (
                    image[dep] and req.specifier.contains(image[dep], prereleases=True))):
                continue
            carry[dep] = resolved[dep]["version"]
    return dict(sorted(carry.items()))


def wheel_name(path: Path) -> str:
    """Normalised distribution name of a wheel file."""
    return normalize(path.name.split("-", 1)[0])


def build(out: Path, project: Path = ROOT) -> dict[str, str]:
    """Fills ``out`` with the wheels to carry; returns {name: version}."""
    out.mkdir(parents=True, exist_ok=True)
    for name in SOURCE_ONLY:
        if not any(wheel_name(p) == name for p in out.glob("*.whl")):
            pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), name)
    resolved = resolve(project, out)
    needed = carried(resolved, read_image_list(), PROJECT)
    pins = [f"{name}=={version}" for name, version in needed.items()]
    pip("download", "--quiet", "--no-deps", "--dest", str(out), "--find-links", str(out),
        *target_args(), *pins)
    for stale in out.glob("*.whl"):  # two versions of one package would stop the install
        version = stale.name.split("-")[1]
        if needed.get(wheel_name(stale)) != version:
            stale.unlink()
    own = requirements_of(resolved[normalize(PROJECT)])
    (out / "requirements.txt").write_text("".join(f"{req}\n" for req in own))
    from_image = sorted(set(resolved) - set(needed) - {normalize(PROJECT)})
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
