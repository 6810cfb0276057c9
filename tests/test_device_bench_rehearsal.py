"""The GPU kit rehearsed end to end on the CPU (launch/rehearse_device_bench.sh).

A fresh Python 3.12 environment stands in for the GPU image; the kit installs the
wheelhouse offline into it and runs every section at tiny sizes. It needs the package
index (once, for the stand-in and the wheelhouse) and 10-30 minutes on a small CPU,
so it runs only when asked: `make rehearsal` (builds the wheelhouse if missing), or
`LIVT_REHEARSAL=1 python -m pytest -s tests/test_device_bench_rehearsal.py` after
`make wheelhouse`. PYTHON312 names the Python 3.12 interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from livt_jax.tools import device_bench

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.skipif(os.environ.get("LIVT_REHEARSAL") != "1",
                                reason="the rehearsal runs with LIVT_REHEARSAL=1 (make rehearsal)")]


def test_rehearsal_runs_every_section_from_the_offline_install(tmp_path):
    out = tmp_path / "out"
    start = time.perf_counter()
    # As on the GPU machine: one device, no test-suite XLA settings.
    clean_env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    proc = subprocess.run(["bash", str(ROOT / "launch" / "rehearse_device_bench.sh"), str(out)],
                          capture_output=True, text=True, timeout=3600, env=clean_env)
    print(f"rehearsal: {time.perf_counter() - start:.0f} s wall")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    log = (out / "log.txt").read_text()
    wheels = len(list((ROOT / "wheelhouse").glob("*.whl")))
    assert f"requirements from {wheels} wheels" in log and "kept the image's jax==0.11.2" in log
    # The stand-in's older flax / orbax / optax / fsspec were upgraded from the wheelhouse.
    upgraded = log.split("from the wheelhouse:")[1].split("== pip check")[0]
    assert {"flax", "orbax-checkpoint", "optax", "fsspec"} <= {
        line.split("==")[0].lower() for line in upgraded.split()}
    results = json.loads((out / "results.json").read_text())
    sections = results["sections"]
    assert list(sections) == device_bench.section_names()
    failed = {name: r.get("error") for name, r in sections.items() if r["status"] != "ok"}
    assert not failed
    env = sections["env"]["result"]
    assert env["python"].startswith("3.12") and env["versions"]["jax"] == "0.11.2"
    assert env["device_count"] == 1
    site = str(ROOT / ".rehearsal" / "site")
    assert all(path.startswith(site) for path in env["installed_from"].values())
    assert sections["attention"]["result"]["passed"]
    rows = results["rows"]
    assert len(rows) == 10 and all(r["img_s"] > 0 and r["mfu"] > 0 for r in rows)
    assert all("vs_torch_eager" in r for r in rows)
    assert sections["host"]["result"]["ratio"] > 0
    report = (out / "results.md").read_text()
    assert "| BFT | PyTorch timm, torch.compile |" in report and "Host BFT augmentation" in report
    print(report)
