"""The CIFAR-10-LT study's rendering (from records) and the rule that tuning never reads test."""

import json
import os
import shutil

import numpy as np
import pytest
from scipy import stats as scipy_stats

from livt_jax import config_lib, train
from livt_jax.experiments import study_folder, study_render
from livt_jax.experiments.configs import cifar10_lt as study

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "image_folder")


def write_records(folder, top1):
    """Records for 3 seeds x 5 arms; top1[arm][seed] is the selected model's test top-1."""
    for arm, by_seed in top1.items():
        for seed, value in enumerate(by_seed):
            history = [{"epoch": float(e), "top1": value - 10 + e, "many": 0.0, "medium": 0.0}
                       for e in range(1, 11)]
            record = {"arm": arm, "seed": seed, "wall_s": 60.0,
                      "test_best": {"top1": value, "many": value + 5, "medium": value - 20,
                                    "epoch": 9.0},
                      "test_final": {"top1": value - 1, "many": value + 4,
                                     "medium": value - 21, "epoch": 10.0},
                      "val_history": history}
            (folder / f"seed{seed}_{arm}.json").write_text(json.dumps(record))
    (folder / "seed0_mgp.json").write_text(json.dumps({"arm": "mgp", "seed": 0, "wall_s": 120.0}))
    (folder / "tune_0.01.json").write_text(json.dumps({"wall_s": 30.0}))
    (folder / "choice.json").write_text(json.dumps({
        "key": "finetune.optim.blr", "value": 0.01, "validation_top1": {"0.01": 40.0}}))


def test_render_computes_paired_intervals_from_the_records(tmp_path):
    rng = np.random.default_rng(0)
    top1 = {arm: (50 + rng.normal(0, 2, 3)).tolist() for arm in study.ARMS}
    write_records(tmp_path, top1)
    rows = study_render.claims(study_folder.read_records(str(tmp_path)))
    for row, (_, a, b) in zip(rows, study.CLAIMS):
        diffs = np.subtract(top1[a], top1[b])
        half = scipy_stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
        assert row["mean"] == pytest.approx(diffs.mean())
        assert (row["low"], row["high"]) == pytest.approx((diffs.mean() - half,
                                                           diffs.mean() + half))
        assert row["p"] == pytest.approx(scipy_stats.ttest_rel(top1[a], top1[b]).pvalue)
    section = study_render.render(str(tmp_path))
    for label in study.ARM_LABELS.values():
        assert f"| {label} | 3 |" in section
    assert "total 18 min" in section  # 15 x 60 s + 120 s + 30 s = 17.5 min


def test_convergence_reads_the_validation_history(tmp_path):
    write_records(tmp_path, {arm: [50.0, 52.0, 54.0] for arm in study.ARMS})
    curves = study_render.convergence(study_folder.read_records(str(tmp_path)))
    assert curves["livt"][1] == [41.0, 43.0, 45.0]
    assert curves["mgp_ce"][10] == [50.0, 52.0, 54.0]



def test_plot_convergence_writes_a_png(tmp_path):
    write_records(tmp_path, {arm: [50.0, 52.0, 54.0] for arm in study.ARMS})
    path = tmp_path / "convergence.png"
    study_render.plot_convergence(study_folder.read_records(str(tmp_path)), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

def test_replace_section_keeps_the_rest():
    text = f"head\n{study_render.BEGIN}\nold\n{study_render.END}\ntail\n"
    assert study_render.replace_section(text, "new") == (
        f"head\n{study_render.BEGIN}\nnew\n{study_render.END}\ntail\n")
    with pytest.raises(ValueError, match="no <!-- cifar10_lt:begin -->"):
        study_render.replace_section("no markers", "new")


def folder_finetune_config(root, test_at_end):
    """A seconds-long BFT on the image-folder sample with held-out validation."""
    c = config_lib.base_config()
    c.stage = "finetune"
    c.data.update(dict(source="image_folder", data_dir=str(root), train_split="train",
                       eval_split="test", val_per_class=1, image_size=8))
    c.model.update(dict(variant="", embed_dim=16, depth=1, num_heads=2, patch_size=4))
    c.finetune.update(dict(epochs=3.0, batch_size=8, drop_path=0.0))
    c.finetune.aug.update(dict(randaug_num_ops=0, random_erasing_prob=0.0))
    c.finetune.mixup.update(dict(mixup_alpha=0.0, cutmix_alpha=0.0))
    c.eval.update(dict(batch_size=8, test_at_end=test_at_end))
    c.checkpoint.update(dict(save_every_steps=100, async_save=False))
    c.log_every_steps = 1
    return c


@pytest.mark.e2e
def test_tuning_runs_never_read_the_test_split(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(SAMPLE, root)
    for image in (root / "test").rglob("*.*"):
        image.write_bytes(b"unreadable")  # any read of the test split fails
    summary = train.train_and_evaluate(folder_finetune_config(root, False), str(tmp_path / "a"))
    assert "final" not in summary and "best" not in summary
    assert summary["best_val"]["top1"] >= 0 and summary["selected_on"] == "validation"
    with pytest.raises(ValueError, match="cannot decode image"):
        train.train_and_evaluate(folder_finetune_config(root, True), str(tmp_path / "b"))


@pytest.mark.e2e
def test_final_and_selected_models_are_tested_once_each(tmp_path):
    summary = train.train_and_evaluate(folder_finetune_config(SAMPLE, True), str(tmp_path))
    assert {"final", "best"} <= set(summary)
    epochs = [h["epoch"] for h in summary["history"]]
    assert summary["best"]["epoch"] in epochs and summary["final"]["epoch"] == epochs[-1]
    best_val = max(h["top1"] for h in summary["history"])
    assert summary["best"]["val_top1"] == best_val == summary["best_val"]["top1"]
    assert os.path.isdir(tmp_path / "best_export")
