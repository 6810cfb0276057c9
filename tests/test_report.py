"""Run reports: metrics.jsonl written by MetricWriter and read back by report.read_metrics;
the per-class CSV."""

import csv

import numpy as np

from livt_jax import report


def test_read_metrics_filters_by_stage_and_follows_truncation(tmp_path):
    assert report.read_metrics(str(tmp_path)) == []  # no file yet
    pretrain = report.MetricWriter(str(tmp_path), "pretrain")
    pretrain.write(1, {"loss": 2.5})
    finetune = report.MetricWriter(str(tmp_path), "finetune")
    for step in (1, 2, 3):
        finetune.write(step, {"loss": 1.0 / step, "eval_top1": 10.0 * step})
    records = report.read_metrics(str(tmp_path))
    assert [(r["stage"], r["step"]) for r in records] == [
        ("pretrain", 1), ("finetune", 1), ("finetune", 2), ("finetune", 3)]
    assert report.read_metrics(str(tmp_path / "metrics.jsonl"), "pretrain") == [
        {"stage": "pretrain", "step": 1, "loss": 2.5}]
    finetune.truncate_after(2)
    assert [r["step"] for r in report.read_metrics(str(tmp_path), "finetune")] == [1, 2]
    assert finetune.read_eval_history() == [{"top1": 10.0}, {"top1": 20.0}]
    pretrain.close()
    finetune.close()


def test_per_class_csv_names_each_class_and_its_shot_group(tmp_path):
    path = str(tmp_path / "per_class.csv")
    report.write_per_class_csv(path, ["cat", "dog", "emu"], np.array([150, 20, 3]),
                               np.array([0.5, 0.25, 0.0]))
    rows = list(csv.reader(open(path, encoding="utf-8")))
    assert rows == [["class", "name", "train_count", "group", "accuracy"],
                    ["0", "cat", "150", "many", "0.5000"], ["1", "dog", "20", "medium", "0.2500"],
                    ["2", "emu", "3", "few", "0.0000"]]
