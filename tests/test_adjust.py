"""livt-adjust: re-scoring rules and the choice on validation against hand-written NumPy."""

import numpy as np
import pytest

from livt_jax import adjust, losses

COUNTS = np.array([800, 479, 287, 172, 103, 61, 37, 22, 13, 8])


def write_logits(path, logits, labels, counts=COUNTS, tau=1.0):
    np.savez(path, logits=np.asarray(logits, np.float32), labels=np.asarray(labels, np.int64),
             train_class_counts=np.asarray(counts, np.int64), loss=np.str_("bal_bce"),
             tau=np.float64(tau))
    return str(path)


def biased_logits(rng, n, strength):
    """Logits (n, C) of a balanced label set, pushed towards frequent classes by
    `strength`·log n_c: post-hoc adjustment with τ ≈ strength undoes the push."""
    labels = rng.integers(0, len(COUNTS), n)
    z = rng.normal(0, 1.0, (n, len(COUNTS)))
    z[np.arange(n), labels] += 1.5
    return z + strength * np.log(COUNTS), labels


def reference_metrics(scores, labels, counts):
    """top-1 and many/medium/few (%), by loops over classes."""
    predicted = [int(np.argmax(row)) for row in scores]
    per_class = {}
    for c in range(len(counts)):
        members = [i for i in range(len(labels)) if labels[i] == c]
        if members:
            per_class[c] = 100.0 * sum(predicted[i] == c for i in members) / len(members)
    out = {"top1": 100.0 * np.mean([p == y for p, y in zip(predicted, labels)])}
    for name, test in (("many", lambda n: n > 100), ("medium", lambda n: 20 <= n <= 100),
                       ("few", lambda n: n < 20)):
        accs = [a for c, a in per_class.items() if test(counts[c])]
        if accs:
            out[name] = float(np.mean(accs))
    return out


def test_logit_adjustment_matches_a_numpy_reference(tmp_path):
    rng = np.random.default_rng(0)
    val_z, val_y = biased_logits(rng, 400, 0.5)
    test_z, test_y = biased_logits(rng, 500, 0.5)
    val = write_logits(tmp_path / "val.npz", val_z, val_y)
    test = write_logits(tmp_path / "test.npz", test_z, test_y)
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    result = adjust.run("logit_adjust", val, test, grid=grid)

    prior = COUNTS / COUNTS.sum()
    val32 = val_z.astype(np.float32).astype(np.float64)  # the file stores float32
    val_top1 = {t: reference_metrics(val32 - t * np.log(prior), val_y, COUNTS)["top1"]
                for t in grid}
    best = max(grid, key=lambda t: (val_top1[t], -grid.index(t)))
    assert result["criterion"] == pytest.approx(val_top1)
    assert result["value"] == best and best > 0  # the adjustment helps on this data
    test32 = test_z.astype(np.float32).astype(np.float64)
    expected = reference_metrics(test32 - best * np.log(prior), test_y, COUNTS)
    raw = reference_metrics(test32, test_y, COUNTS)
    for key, value in expected.items():
        assert result["adjusted"][key] == pytest.approx(value), key
        assert result["raw"][key] == pytest.approx(raw[key]), key
    assert result["adjusted"]["few"] > result["raw"]["few"]


def test_the_value_is_chosen_on_validation_never_on_test(tmp_path):
    rng = np.random.default_rng(1)
    val_z, val_y = biased_logits(rng, 300, 0.0)  # unbiased: τ = 0 is best on validation
    test_z, test_y = biased_logits(rng, 300, 2.0)  # strongly biased: τ = 2 would be best here
    val = write_logits(tmp_path / "val.npz", val_z, val_y)
    test = write_logits(tmp_path / "test.npz", test_z, test_y)
    result = adjust.run("logit_adjust", val, test, grid=[0.0, 2.0])
    assert result["value"] == 0.0
    swapped = adjust.run("logit_adjust", test, val, grid=[0.0, 2.0])
    assert swapped["value"] == 2.0
    with pytest.raises(ValueError, match="same logits: the value would be chosen on the test"):
        adjust.run("logit_adjust", test, test, grid=[0.0, 2.0])


def test_temperature_minimises_validation_nll_and_keeps_accuracy(tmp_path):
    rng = np.random.default_rng(2)
    val_z, val_y = biased_logits(rng, 300, 0.0)
    test_z, test_y = biased_logits(rng, 300, 0.0)
    val = write_logits(tmp_path / "val.npz", 3.0 * val_z, val_y)  # over-confident
    test = write_logits(tmp_path / "test.npz", 3.0 * test_z, test_y)
    grid = [0.5, 1.0, 2.0, 3.0, 4.0]
    result = adjust.run("temperature", val, test, grid=grid)

    def nll(z, y, t):
        z = z.astype(np.float32).astype(np.float64) / t
        log_p = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) \
            - z.max(1, keepdims=True)
        return -np.mean(log_p[np.arange(len(y)), y])
    expected = {t: nll(3.0 * val_z, val_y, t) for t in grid}
    assert result["criterion"] == pytest.approx(expected)
    assert result["value"] == min(grid, key=expected.get)
    assert result["adjusted"]["top1"] == result["raw"]["top1"]
    assert result["adjusted"]["ece"] < result["raw"]["ece"]


def test_balanced_rule_defaults_to_the_training_tau_of_the_file(tmp_path):
    rng = np.random.default_rng(3)
    z, y = biased_logits(rng, 200, 0.0)
    val = write_logits(tmp_path / "val.npz", z, y, tau=1.25)
    test = write_logits(tmp_path / "test.npz", z[::-1] + 0.1, y[::-1])
    result = adjust.run("balanced", val, test)
    assert result["value"] == 1.25 and result["criterion"] == {}
    prior = COUNTS / COUNTS.sum()
    margin = 1.25 * (np.log(prior) - np.log1p(-prior))
    zt = (z[::-1] + 0.1).astype(np.float32).astype(np.float64)
    scores = -np.log1p(np.exp(-(zt + margin))) - np.log(prior)
    assert result["adjusted"]["top1"] == pytest.approx(
        reference_metrics(scores, y[::-1], COUNTS)["top1"])


def test_cli_prints_the_choice_and_the_test_table(tmp_path, capsys):
    rng = np.random.default_rng(4)
    val = write_logits(tmp_path / "val.npz", *biased_logits(rng, 200, 0.5))
    test = write_logits(tmp_path / "test.npz", *biased_logits(rng, 200, 0.5))
    assert adjust.main([val, test, "--method", "logit_adjust", "--grid", "0,0.5,1"]) == 0
    out = capsys.readouterr().out
    assert "chosen on validation: τ = " in out and "validation top-1 % by τ: 0: " in out
    assert "raw" in out and "logit_adjust τ=" in out and "many" in out and "ece" in out
    assert adjust.main([val, str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    assert adjust.main([val, test, "--method", "temperature", "--value", "0"]) == 2
    assert "temperature 0.0: expected a value > 0" in capsys.readouterr().err


def test_balanced_rule_recovers_the_balanced_posterior():
    # At Bal-BCE's optimum z_c = logit p_c - logit π_c (docs/DESIGN.md); the balanced rule must
    # turn that back into log p_c - log π_c exactly, while the raw z differs from it by
    # log((1 - π_c) / (1 - p_c)).
    rng = np.random.default_rng(0)
    prior = COUNTS / COUNTS.sum()
    p = rng.dirichlet(np.ones(10), size=64)
    logit = lambda q: np.log(q) - np.log1p(-q)  # noqa: E731
    z = logit(p) - logit(prior)
    np.testing.assert_allclose(losses.bal_bce_margins(COUNTS, 1.0, dtype=np.float64), logit(prior), rtol=1e-12)
    np.testing.assert_allclose(losses.bal_bce_margins(COUNTS, 0.5, dtype=np.float64), 0.5 * logit(prior), rtol=1e-12)
    scores = adjust.balanced_rule_scores(z, COUNTS, 1.0)
    np.testing.assert_allclose(scores, np.log(p) - np.log(prior), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(z - scores, np.log1p(-prior) - np.log1p(-p), rtol=1e-9,
                               atol=1e-9)
    # an input confusable between the head (π 0.40) and class 5 (π 0.03): raw z picks
    # the head, the balanced rule picks class 5 (p_0 / π_0 < p_5 / π_5)
    q = np.full(10, 0.0025)
    q[0], q[5] = 0.9, 0.08
    z1 = logit(q) - logit(prior)
    assert q[0] / prior[0] < q[5] / prior[5]
    assert z1.argmax() == 0 and adjust.balanced_rule_scores(z1[None], COUNTS, 1.0).argmax() == 5


