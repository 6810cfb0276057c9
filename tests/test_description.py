"""Self-describing exports: model.json, eval / init_from without model flags, logits files."""

import os
import subprocess
import sys

import numpy as np
import pytest

from livt_jax import checkpoint, config_checks, config_lib, description, mesh as mesh_lib, stage, train
from livt_jax.config_lib import stage_data_config
from livt_jax.data import pipeline
from livt_jax.evaluator import Evaluator
from livt_jax.models import factory
from tests.helpers.common import tiny_config
from tests.helpers.exports import eval_config, finetune_spec, random_params, write_export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_description_records_model_data_prior_and_provenance(tmp_path):
    config = tiny_config()
    write_export(tmp_path / "export", config)
    found = description.read(str(tmp_path / "export"))
    assert found["kind"] == "vit"
    assert found["model"] == {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 4,
                              "mlp_ratio": 4.0, "img_size": 28, "in_chans": 1,
                              "num_classes": 10, "global_pool": "avg"}
    assert found["class_names"][:3] == ["Bear", "Bird", "Cat"]
    assert found["train_class_counts"] == [800, 479, 287, 172, 103, 61, 37, 22, 13, 8]
    assert (found["mean"], found["std"]) == ([0.5], [0.5])
    assert (found["eval_crop_pct"], found["eval_resize"]) == (0.875, 32)
    assert found["config"]["model"]["depth"] == 2 and found["loss"] == "bal_bce"
    assert found["commit"] is None or len(found["commit"]) == 40
    assert not [p for p in os.listdir(tmp_path / "export") if ".tmp" in p]  # renamed in place


def test_git_commit_outside_a_checkout_is_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git to run
    assert description.git_commit() is None


def test_eval_takes_the_model_from_the_description_and_saves_logits(tmp_path):
    export = tmp_path / "export"
    params = write_export(export, tiny_config())
    # The config describes another model (depth 4, width 64): the description wins.
    config = eval_config(export, embed_dim=64, depth=4, num_heads=4)
    config.eval.save_logits = True
    summary = train.train_and_evaluate(config, str(tmp_path / "eval"))

    saved = np.load(tmp_path / "eval" / "eval_logits.npz")
    assert saved["logits"].dtype == np.float32 and saved["logits"].shape == (2000, 10)
    assert saved["labels"].shape == (2000,)
    np.testing.assert_array_equal(saved["train_class_counts"],
                                  [800, 479, 287, 172, 103, 61, 37, 22, 13, 8])
    reference = Evaluator.for_config(tiny_config(), mesh_lib.make_mesh()).run(params)
    top1 = 100 * np.mean(saved["logits"].argmax(1) == saved["labels"])
    assert top1 == pytest.approx(reference["top1"])
    for key in ("top1", "top5", "many", "medium", "few", "ece"):
        assert summary["final"][key] == pytest.approx(reference[key]), key


def test_export_without_description_still_loads_with_flags(tmp_path):
    export = tmp_path / "export"
    params = write_export(export, tiny_config())
    os.remove(export / description.FILE)
    summary = train.train_and_evaluate(eval_config(export), str(tmp_path / "eval"))
    reference = Evaluator.for_config(tiny_config(), mesh_lib.make_mesh()).run(params)
    assert summary["final"]["top1"] == pytest.approx(reference["top1"])
    with pytest.raises(ValueError, match="is from another model"):  # and needs the right flags
        train.train_and_evaluate(eval_config(export, depth=3), str(tmp_path / "eval3"))


def test_mgp_description_sets_the_finetune_model_and_the_handover_grid(tmp_path):
    pretrain = tiny_config()
    pretrain.pretrain.image_size = 24
    train_source = pipeline.load_sources(stage_data_config(pretrain, "pretrain").data).train
    mae = factory.build_mae(pretrain.model, pretrain.data.in_chans, 24)
    exported = random_params(mae, 3)
    checkpoint.save_params_export(str(tmp_path / "mgp"), exported)
    description.write(str(tmp_path / "mgp"),
                      description.describe(pretrain, "pretrain", train_source))
    config = tiny_config()
    config.model.update(dict(embed_dim=64, depth=4, num_heads=4))  # not the export's model
    config.finetune.init_from = str(tmp_path / "mgp")
    resolved = stage.with_init_description(config)
    assert factory.model_dims(resolved.model) == {"embed_dim": 32, "depth": 2, "num_heads": 2,
                                                  "patch_size": 4}
    assert resolved.pretrain.image_size == 24
    model = factory.build_vit(resolved.model, resolved.data.in_chans, 10, 28, 0.0)
    params = stage.handover_fn(finetune_spec(resolved), model)(random_params(model, 4))
    np.testing.assert_array_equal(params["blocks_1"]["mlp"]["fc1"]["kernel"],
                                  exported["blocks_1"]["mlp"]["fc1"]["kernel"])
    assert params["pos_embed"].shape == (1, 1 + 7 * 7, 32)  # 24 px grid 6 resized to 7


def test_a_flag_contradicting_the_description_is_one_line(tmp_path):
    export = tmp_path / "export"
    write_export(export, tiny_config())
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", "livt_jax.main", "--config", "configs/demo.py",
         "--config.stage=eval", f"--config.eval.params_from={export}",
         "--config.model.depth=3", "--config.model.embed_dim=32", "--config.model.num_heads=2",
         f"--workdir={tmp_path / 'eval'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model.depth=3 but the export has 2")
    assert "model.embed_dim" not in lines[0]  # agreeing flags are fine


def test_a_differing_value_is_an_error_only_for_a_command_line_key(tmp_path):
    """Called from Python no key was given on the command line: the export's value wins;
    inside `overrides_from_command_line` with the key, it is a ConfigError naming both."""
    export = tmp_path / "export"
    write_export(export, tiny_config())
    found = description.read(str(export))
    config = eval_config(export, depth=3)
    applied = description.apply(config, found, description.EVAL_KEYS, stage="finetune",
                                source=str(export))
    assert applied.model.depth == 2
    with config_lib.overrides_from_command_line(frozenset({"model.depth"})):
        with pytest.raises(config_checks.ConfigError, match="model.depth=3 but the export has 2"):
            description.apply(config, found, description.EVAL_KEYS, stage="finetune",
                              source=str(export))
    with config_lib.overrides_from_command_line(frozenset({"model.embed_dim"})):
        assert description.apply(config, found, description.EVAL_KEYS, stage="finetune",
                                 source=str(export)).model.depth == 2
