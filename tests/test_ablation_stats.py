"""The Animal-MNIST-LT intervals: recomputed by hand from the stored results, and
quoted verbatim in docs/RESULTS.md."""

import json
import os

import numpy as np
import pytest
from scipy import stats as scipy_stats

from livt_jax.experiments import ablation_stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results")


def _load(name):
    with open(os.path.join(RESULTS, name), encoding="utf-8") as f:
        return json.load(f)


def _find(rows, a, b, metric, evidence, section="IR 100"):
    (hit,) = [r for r in rows if (r["section"], r["a"], r["b"], r["metric"], r["evidence"])
              == (section, a, b, metric, evidence)]
    return hit


@pytest.fixture(scope="module")
def rows():
    return ablation_stats.all_rows(RESULTS)


def test_paired_test_interval_by_hand(rows):
    inv, abl = _load("investigate_ir100.json"), _load("ablation_ir100.json")
    per_arm = []
    for arm in ("bal_ce-mgp-instance", "bal_bce-mgp-instance"):
        x = [inv["per_seed"][arm][s]["test_final"]["top1"] for s in ("0", "1")]
        stored = abl["arms"][arm]["final"]["top1"]
        x.append(3 * stored["mean"] - sum(x))
        assert np.std(x, ddof=1) == pytest.approx(stored["std"], abs=1e-9)
        per_arm.append(np.array(x))
    d = per_arm[0] - per_arm[1]
    half = scipy_stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    got = _find(rows, "Bal-CE", "Bal-BCE", "top1", "test, paired")
    assert got["diffs"] == pytest.approx(d.tolist())
    assert (got["low"], got["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert got["low"] > 0  # the paired interval is the only one that excludes 0 here


def test_welch_row_matches_scipy_from_stats(rows):
    arms = _load("ablation_ir100.json")["arms"]
    a, b = arms["bal_ce-mgp-instance"]["final"]["few"], arms["bal_bce-mgp-instance"]["final"]["few"]
    ref = scipy_stats.ttest_ind_from_stats(a["mean"], a["std"], a["n"], b["mean"], b["std"],
                                           b["n"], equal_var=False)
    got = _find(rows, "Bal-CE", "Bal-BCE", "few", "test, Welch")
    assert got["p"] == pytest.approx(ref.pvalue)
    assert got["low"] < 0 < got["high"]


def test_validation_row_is_paired_over_the_stored_seeds(rows):
    val = _load("validation_ir100.json")["per_seed"]
    d = [val["bal_bce-mgp-instance"][s]["top1"] - val["bal_bce-scratch-instance"][s]["top1"]
         for s in ("0", "1", "2")]
    got = _find(rows, "Bal-BCE", "Bal-BCE scratch", "top1", "validation, paired")
    assert got["diffs"] == pytest.approx(d)
    assert got["p"] == pytest.approx(scipy_stats.ttest_1samp(d, 0.0).pvalue)


def test_results_md_quotes_the_rendered_tables(rows):
    with open(os.path.join(ROOT, "docs", "RESULTS.md"), encoding="utf-8") as f:
        doc = f.read()
    assert ablation_stats.markdown(rows) in doc


def test_missing_results_dir_is_a_one_line_error(tmp_path, capsys):
    assert ablation_stats.main(["--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(tmp_path) in err
