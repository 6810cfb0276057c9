"""The training loop end to end on the demo data (tiny model, few steps)."""

import json
import os
import sys

import jax
import numpy as np
import pytest

from livt_jax import checkpoint, config_lib, train
from tests.helpers import procs
from tests.helpers.common import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.e2e
def test_livt_pipeline_writes_everything(tmp_path):
    summary = train.train_and_evaluate(tiny_config(), str(tmp_path))
    final = summary["final"]
    for key in ("top1", "top5", "many", "medium", "few", "ece"):
        assert 0.0 <= final[key] <= 100.0, key
    for name in ("pretrain/reconstructions.png", "pretrain/export", "finetune/export",
                 "finetune/final_per_class.csv", "finetune/final_per_class.png",
                 "finetune/metrics.jsonl"):
        assert os.path.exists(tmp_path / name), name
    assert (tmp_path / "finetune" / "checkpoints").iterdir()
    for stage, kind in (("pretrain", "mae"), ("finetune", "vit")):  # exports describe themselves
        with open(tmp_path / stage / "export" / "model.json", encoding="utf-8") as f:
            described = json.load(f)
        assert described["kind"] == kind and described["model"]["embed_dim"] == 32
    records = read_jsonl(tmp_path / "finetune" / "metrics.jsonl")
    assert any("eval_top1" in r for r in records) and any("loss" in r for r in records)
    ft = checkpoint.load_params_export(str(tmp_path / "finetune" / "export"))
    assert ft["head"]["kernel"].shape == (32, 10)
    # The eval stage scores the export exactly as the run's final evaluation did.
    config = tiny_config()
    config.stage = "eval"
    config.eval.params_from = str(tmp_path / "finetune" / "export")
    scored = train.train_and_evaluate(config, str(tmp_path / "eval"))
    assert scored["final"]["top1"] == pytest.approx(final["top1"])
    assert scored["final"].get("few") == pytest.approx(final.get("few"))


@pytest.mark.e2e
def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    config = tiny_config(**{"finetune.epochs": 2})
    config.stage = "finetune"
    config.data.val_per_class = 5  # the best epoch is chosen on validation
    straight = train.train_and_evaluate(config, str(tmp_path / "straight"))
    config.stop_after_steps = 7
    stopped = train.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert stopped["stopped_at"] == 7
    config.stop_after_steps = 0
    resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert resumed["total_steps"] == straight["total_steps"] > 7
    for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(straight["state"].params)),
                    jax.tree_util.tree_leaves(jax.device_get(resumed["state"].params))):
        np.testing.assert_array_equal(a, b)
    # Same data order: identical per-step losses after the restart.
    losses = lambda d: {r["step"]: r["loss"] for r in read_jsonl(d / "metrics.jsonl")  # noqa: E731
                        if "loss" in r}
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")
    # Best and final epochs cover the whole run, across the restart.
    assert resumed["best_val"] == straight["best_val"]
    assert resumed["best"]["top1"] == straight["best"]["top1"]
    assert resumed["final"]["top1"] == straight["final"]["top1"]
    assert len(resumed["history"]) == len(straight["history"]) == 2


@pytest.mark.e2e
def test_nan_loss_stops_with_the_step(tmp_path):
    config = tiny_config()
    config.stage = "finetune"
    config.finetune.optim.blr = 1e30
    with pytest.raises(FloatingPointError, match=r"at step \d+"):
        train.train_and_evaluate(config, str(tmp_path))


def _main(args, **env):
    return procs.run([sys.executable, "-m", "livt_jax.main", *args], cwd=REPO,
                     capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", **env})


@pytest.mark.parametrize("override, message", [
    ("--config.finetune.bogus_key=1", "bogus_key"),
    ("--config.finetune.epochs=ten", "epochs"),
    ("--config.finetune.sampler=nonsense", "nonsense"),
])
@pytest.mark.e2e
def test_config_errors_name_the_key(tmp_path, override, message):
    result = _main(["--config", "configs/demo.py", "--workdir", str(tmp_path), override,
                    "--config.stage=finetune"])
    assert result.returncode != 0
    assert message in result.stderr


def test_missing_dataset_path_is_a_clear_error(tmp_path):
    config = tiny_config()
    config.data.update(dict(source="split_list", data_dir=str(tmp_path / "no_such_root"),
                            train_split="train.txt", eval_split="val.txt"))
    config.stage = "finetune"
    with pytest.raises(FileNotFoundError, match="no_such_root"):
        train.train_and_evaluate(config, str(tmp_path / "wd"))


def test_unknown_stage_is_a_clear_error(tmp_path):
    config = tiny_config()
    config.stage = "train"
    with pytest.raises(ValueError, match="'train'"):
        train.train_and_evaluate(config, str(tmp_path))


def test_sampler_is_a_per_stage_setting():
    config = tiny_config(**{"finetune.sampler": "class_balanced"})
    config.stage = "livt"
    assert "sampler" not in config.data  # `--config.data.sampler` is an unknown key
    assert config_lib.stage_data_config(config, "pretrain").data.sampler == "instance"
    assert config_lib.stage_data_config(config, "finetune").data.sampler == "class_balanced"
