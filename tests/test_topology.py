"""Exports and train-state checkpoints load on another device count, both ways:
written on 8 fake devices, read in a one-device process (tests/helpers/topology_worker.py),
and written there, read back here; through `load_params_export(path)`, the `eval`
stage, `finetune.init_from` and `convert to-torch`."""

import json
import os
import sys

import numpy as np
import pytest

from livt_jax import checkpoint, train
from tests.helpers import procs
from tests.helpers.topology_worker import finetune_config, flat_params, read_everything

pytestmark = [pytest.mark.e2e, pytest.mark.torch]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_same(actual: dict, expected: dict):
    assert sorted(actual) == sorted(expected) and len(expected) > 10
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def assert_torch_head(pth: str, export: str):
    import torch
    state = torch.load(pth, weights_only=True)
    head = flat_params(checkpoint.load_params_export(export))["head/kernel"]
    np.testing.assert_array_equal(state["head.weight"].numpy(), head.T)


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    """(8-device run dir, its summary, one-device output dir, its results)."""
    eight = tmp_path_factory.mktemp("eight")
    one = tmp_path_factory.mktemp("one")
    assert train.train_and_evaluate(finetune_config(stop_after_steps=5),
                                    str(eight / "stopped"))["stopped_at"] == 5
    summary = train.train_and_evaluate(finetune_config(), str(eight))
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    result = procs.run(["timeout", str(round(procs.scaled(500))), sys.executable,
                        "tests/helpers/topology_worker.py", str(eight), str(one)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=560)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    with open(one / "results.json", encoding="utf-8") as f:
        return eight, summary, one, json.load(f)


def test_export_from_8_devices_reads_on_1(sides):
    eight, summary, one, results = sides
    export = str(eight / "export")
    with np.load(one / "from8_loaded.npz") as loaded:
        assert_same(dict(loaded), flat_params(checkpoint.load_params_export(export)))
    assert results["eval_of_8"]["top1"] == pytest.approx(summary["final"]["top1"])
    assert_torch_head(str(one / "from8.pth"), export)  # init_from ran in the worker


def test_export_from_1_device_reads_on_8(sides, tmp_path):
    _, _, one, results = sides
    export = str(one / "run1" / "export")
    final = read_everything(export, str(tmp_path), "from1")
    with np.load(one / "run1_params.npz") as written, np.load(tmp_path / "from1_loaded.npz") as got:
        assert_same(dict(got), dict(written))
    assert final["top1"] == pytest.approx(results["run1_final"]["top1"])
    assert_torch_head(str(tmp_path / "from1.pth"), export)


def test_train_state_moves_8_to_1_to_8(sides):
    eight, summary, _, results = sides
    assert results["resumed_8_stopped_at"] == 7  # resumed on 1 device from step 5
    resumed = train.train_and_evaluate(finetune_config(), str(eight / "stopped"))
    assert resumed["total_steps"] == summary["total_steps"] > 7
    straight = flat_params(summary["state"].params)
    for key, value in flat_params(resumed["state"].params).items():
        np.testing.assert_allclose(value, straight[key], atol=1e-4, err_msg=key)
