"""The τ study's scoring, τ selection, decision rule, confusions and tables (no training)."""

import os

import numpy as np
import pytest

from livt_jax.experiments import tau_study as ts
from livt_jax.experiments.configs import animal_mnist as am

COUNTS = np.array([800, 479, 287, 172, 103, 61, 37, 22, 13, 8])


def test_confusion_and_its_metrics():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    preds = np.array([0, 1, 1, 1, 0, 2, 0, 0, 2])
    conf = ts.confusion_matrix(labels, preds, 4)
    expected = np.zeros((4, 4), int)
    for t, p in zip(labels, preds):
        expected[t, p] += 1
    np.testing.assert_array_equal(conf, expected)
    m = ts.confusion_metrics(conf, np.array([500, 50, 5, 5]))  # many, medium, few, few
    assert m["top1"] == pytest.approx(100 * 5 / 9)
    np.testing.assert_allclose(m["per_class"][:3], [50.0, 200 / 3, 50.0])
    assert np.isnan(m["per_class"][3])  # no test image: left out of the few group
    assert (m["many"], m["medium"], m["few"]) == (50.0, pytest.approx(200 / 3), 50.0)
    with pytest.raises(ValueError, match="differ"):
        ts.confusion_matrix(labels, preds[:3], 4)
    pct = 100.0 * conf[:3, :3] / conf[:3, :3].sum(1, keepdims=True)
    assert sorted(ts.top_confusions(pct, k=2)) == [(0, 1, 50.0), (2, 0, 50.0)]
    assert ts.top_confusions(pct, k=3)[2] == (1, 0, pytest.approx(100 / 3))


def test_select_tau():
    assert ts.select_tau({1.0: [50, 52], 0.5: [60, 40], 1.5: [49, 49]}) == 1.0
    assert ts.select_tau({0.5: [50], 1.0: [50]}) == 0.5  # tie: the first
    with pytest.raises(ValueError):
        ts.select_tau({})


def _fake_run(rng, loss, tau, skill):
    """A run's scores: one confusion per split and rule, skill = accuracy in %."""
    out = {"train_counts": COUNTS.tolist()}
    for split, n in (("val", 100), ("test", 200)):
        out[split] = {}
        for rule in (("raw", "balanced") if loss == "bal_bce" else ("raw",)):
            labels = np.repeat(np.arange(10), n)
            hit = rng.random(labels.size) < skill / 100
            preds = np.where(hit, labels, 0)  # misses go to the head
            conf = ts.confusion_matrix(labels, preds, 10)
            out[split][rule] = {"confusion": conf.tolist(), **ts.confusion_metrics(conf, COUNTS)}
    return out


def test_analysis_tables_and_plots(tmp_path):
    rng = np.random.default_rng(0)
    peak = {"bal_ce": 0.75, "bal_bce": 1.0}
    scores = {}
    for loss in ("bal_ce", "bal_bce"):
        for tau in am.TAU_GRID:
            skill = 70 - 40 * abs(tau - peak[loss])
            scores[am.Arm(loss, tau=tau).name] = {s: _fake_run(rng, loss, tau, skill)
                                                  for s in (0, 1)}
    # a seed only one τ has does not take part in the choice
    scores[am.Arm("bal_ce").name][2] = _fake_run(rng, "bal_ce", 1.0, 99.0)
    result = ts.analyse(scores, sorted(am.TAU_GRID))
    assert result["chosen"]["Bal-CE"]["selection_seeds"] == [0, 1]
    assert result["chosen"]["Bal-CE"]["tau"] == 0.75
    assert result["chosen"]["Bal-BCE"]["tau"] == 1.0
    val = [scores[am.Arm("bal_ce", tau=0.75).name][s]["val"]["raw"]["top1"] for s in (0, 1)]
    assert result["chosen"]["Bal-CE"]["at_chosen"]["val"]["top1"]["mean"] == pytest.approx(
        np.mean(val))
    assert result["chosen"]["Bal-CE"]["at_1"]["test"]["top1"]["n"] == 3
    m = np.asarray(result["confusion"]["Bal-BCE"]["matrix_pct"])
    np.testing.assert_allclose(m.sum(1), 100.0)
    assert result["confusion"]["Bal-BCE"]["top"][0][1] == 0  # misses go to the head
    head = {"IR 100": ts.head_share_row(scores)}
    assert head["IR 100"]["head_share"] == pytest.approx(800 / COUNTS.sum())
    assert head["IR 100"]["Bal-CE"]["top1"]["n"] == 3
    seed0 = ts.head_share_row(scores, [0])["Bal-CE"]["top1"]
    assert seed0["n"] == 1 and seed0["mean"] == pytest.approx(
        scores[am.Arm("bal_ce").name][0]["test"]["raw"]["top1"])
    text = ts.format_tables(result, head)
    assert "| Bal-CE | 0.75 | 2 |" in text and "| Bal-CE | 1 | 3 |" in text
    assert "| Bal-BCE | 1 | 2 |" in text and "chosen τ" in text and "(3) |" in text
    assert "| 5 (61) |" in text and "40.4%" in text
    for plot in (ts.plot_validation, ts.plot_confusions):
        path = str(tmp_path / f"{plot.__name__}.png")
        plot(result, path, "t")
        assert os.path.getsize(path) > 0
