"""The Animal-MNIST studies' arms and configs, the driver's arm selection, the report's
aggregation and tables (no training)."""

import json
import os

import numpy as np
import pytest

from livt_jax.experiments import definition, hyper
from livt_jax.experiments import study_report as sr
from livt_jax.experiments.configs import animal_mnist as am

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABLATION = {name: [am.Arm.of(o) for o in group]
            for name, group in am.get_hyper("ablation").items()}


def test_sweeps():
    a = hyper.sweep("x", [1, 2])
    assert a == [{"x": 1}, {"x": 2}]
    assert hyper.product([a, hyper.sweep("y", "ab")]) == [
        {"x": 1, "y": "a"}, {"x": 1, "y": "b"}, {"x": 2, "y": "a"}, {"x": 2, "y": "b"}]
    assert hyper.chain(a, [{"y": 3}]) == [{"x": 1}, {"x": 2}, {"y": 3}]
    with pytest.raises(ValueError, match="'x'"):
        hyper.product([a, a])


def test_every_comparison_is_present():
    raw = am.get_hyper("ablation")
    assert raw["init"] == [  # dotted overrides, MGP init standing for the seed's export
        {**am.ARM_DEFAULTS, "finetune.loss": "bal_bce"},
        {**am.ARM_DEFAULTS, "finetune.loss": "bal_bce", "finetune.init_from": ""}]
    assert raw["init"][0]["finetune.init_from"] == definition.MGP_EXPORT
    groups = ABLATION
    assert {a.loss for a in groups["loss"]} == {"ce", "bce", "bal_ce", "bal_bce"}
    assert all(a.init == "mgp" and a.sampler == "instance" for a in groups["loss"])
    assert set(groups["init"]) == {am.Arm("bal_bce", "mgp"), am.Arm("bal_bce", "scratch")}
    assert set(groups["sampler"]) == {am.Arm(loss, "mgp", sampler) for loss in ("ce", "bal_bce")
                                      for sampler in ("instance", "class_balanced")}
    assert all(a.tau == 1.0 for group in groups.values() for a in group)
    with pytest.raises(ValueError, match="'nope'"):
        am.get_hyper("nope")


def test_shared_arms_run_once():
    arms = am.arm_list(am.get_hyper("ablation"))
    assert len(arms) == len(set(arms)) == 7  # 4 losses + scratch + 2 class-balanced
    assert len({a.name for a in arms}) == 7
    for group in ABLATION.values():
        assert set(group) <= set(arms)
    shared = am.Arm("bal_bce")  # used by all three comparisons
    assert all(shared in group for group in ABLATION.values())
    ce, bce = am.Arm("ce").overrides, am.Arm("bce").overrides
    assert am.arm_list({"a": [ce, bce], "b": [bce]}) == [am.Arm("ce"), am.Arm("bce")]
    # the run folders of the stored study keep their names
    assert [a.name for a in arms] == [
        "ce-mgp-instance", "bce-mgp-instance", "bal_ce-mgp-instance", "bal_bce-mgp-instance",
        "bal_bce-scratch-instance", "ce-mgp-class_balanced", "bal_bce-mgp-class_balanced"]
    study = definition.get_study("ablation")
    assert list(study.arms) == [a.name for a in arms]
    assert [am.Arm.of(o) for o in study.arms.values()] == arms
    assert study.select_arms(" bce-mgp-instance,ce-mgp-instance") == [  # study order
        "ce-mgp-instance", "bce-mgp-instance"]
    assert study.select_arms("") == [a.name for a in arms]
    with pytest.raises(ValueError, match="unknown arm.*nope"):
        study.select_arms("ce-mgp-instance,nope")


def test_tau_study_arms():
    arms = am.arm_list(am.get_hyper("tau"))
    assert len(arms) == 2 * len(am.TAU_GRID) == 10
    assert {(a.loss, a.tau) for a in arms} == {(loss, t) for loss in ("bal_ce", "bal_bce")
                                               for t in am.TAU_GRID}
    assert arms[:2] == [am.Arm("bal_ce"), am.Arm("bal_bce")]  # τ = 1 is the ablation's arm
    assert am.Arm("bal_bce", tau=0.75).name == "bal_bce-mgp-instance-tau0.75"
    config = am.build_config(100, 0, "finetune", arm=am.Arm("bal_ce", tau=1.25), mgp_export="/m")
    assert config.finetune.tau == 1.25 and config.finetune.loss == "bal_ce"
    signatures = {json.dumps(am.schedule_signature(
        am.build_config(100, 0, "finetune", arm=a, mgp_export="/m")), sort_keys=True)
        for a in arms}
    assert len(signatures) == 1


def test_stored_studies_reproduce():
    """docs/results' study JSONs were made with exactly these overrides and arms."""
    for ir in (100, 10):
        with open(os.path.join(ROOT, "docs", "results", f"ablation_ir{ir}.json")) as f:
            stored = json.load(f)
        assert stored["imbalance_ratio"] == ir
        assert json.loads(json.dumps(am.STUDY_OVERRIDES)) == stored["study_overrides"]
        assert set(stored["arms"]) == {a.name for a in am.arm_list(am.get_hyper("ablation"))}
        config = am.get_config(ir)
        assert config.data.source == "animal_mnist" and config.data.imbalance_ratio == ir
        assert (config.data.image_size, config.data.in_chans) == (28, 1)


def test_configs_share_one_schedule():
    mgp = "/tmp/mgp/export"
    configs = {a: am.build_config(100, 1, "finetune", arm=a, mgp_export=mgp)
               for a in am.arm_list(am.get_hyper("ablation"))}
    signatures = [json.dumps(am.schedule_signature(c), sort_keys=True) for c in configs.values()]
    assert len(set(signatures)) == 1
    for arm, c in configs.items():
        assert c.stage == "finetune" and c.seed == 1
        assert c.finetune.loss == arm.loss and c.finetune.sampler == arm.sampler
        assert c.finetune.init_from == (mgp if arm.init == "mgp" else "")
        assert c.finetune.init_kind == "mae" and c.finetune.tau == 1.0
        assert c.finetune.epochs == am.STUDY_OVERRIDES["finetune.epochs"]
        assert c.finetune.eval_every_epochs == 1.0
        assert c.data.imbalance_ratio == 100.0
        for key, value in am.STUDY_OVERRIDES.items():
            node = c
            for part in key.split("."):
                node = node[part]
            assert node == value, key
    pre = am.build_config(10, 2, "pretrain", epochs_scale=0.5)
    assert pre.stage == "pretrain" and pre.seed == 2 and pre.pretrain.sampler == "instance"
    assert pre.pretrain.epochs == am.STUDY_OVERRIDES["pretrain.epochs"] * 0.5
    assert pre.data.imbalance_ratio == 10.0
    with pytest.raises(KeyError):
        am.set_key(pre, "finetune.no_such_key", 1)


def _summary(seed, final, best, curve):
    return {"seed": seed, "final": dict(final), "best": dict(best), "wall_s": 10.0 + seed,
            "history": [{"epoch": float(e + 1), "top1": t} for e, t in enumerate(curve)]}


def test_aggregate_matches_numpy():
    rng = np.random.default_rng(0)
    finals = rng.uniform(0, 100, size=(3, 4))
    bests = rng.uniform(0, 100, size=(3, 4))
    curves = rng.uniform(0, 100, size=(3, 5))
    summaries = []
    for s in range(3):
        final = dict(zip(sr.METRICS, finals[s]), epoch=5.0)
        best = dict(zip(sr.METRICS, bests[s]), epoch=float(s + 2))
        if s == 2:
            del final["few"]  # an absent group is left out, not NaN
        summaries.append(_summary(s, final, best, curves[s]))
    agg = sr.aggregate_arm(summaries)
    for i, m in enumerate(sr.METRICS):
        values = finals[:, i] if m != "few" else finals[:2, i]
        assert agg["final"][m]["mean"] == pytest.approx(np.mean(values))
        assert agg["final"][m]["std"] == pytest.approx(np.std(values, ddof=1))
        assert agg["final"][m]["n"] == len(values)
        assert agg["best"][m]["mean"] == pytest.approx(bests[:, i].mean())
        assert agg["best"][m]["std"] == pytest.approx(bests[:, i].std(ddof=1))
    assert agg["best"]["epoch"]["mean"] == pytest.approx(3.0)
    assert agg["curve"]["epoch"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    np.testing.assert_allclose(agg["curve"]["top1"], curves.mean(0))
    np.testing.assert_allclose(agg["curve"]["top1_std"], curves.std(0, ddof=1))
    assert sr.mean_std([4.0]) == (4.0, 0.0, 1)
    assert sr.mean_std([])[2] == 0
    assert sr.convergence(agg["curve"], -1.0) == 1.0
    assert sr.convergence(agg["curve"], 1e9) is None


def _write_run(root, seed, arm, top1, counts=(800, 100, 8)):
    workdir = os.path.join(root, f"seed{seed}", arm.name)
    os.makedirs(workdir)
    stats = {"top1": top1, "many": top1 + 1, "medium": top1 - 1, "few": top1 - 2, "epoch": 2.0}
    summary = _summary(seed, stats, stats, [top1 - 5, top1])
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f)
    with open(os.path.join(workdir, "final_per_class.csv"), "w") as f:
        f.write("class,name,train_count,group,accuracy\n")
        for c, n in enumerate(counts):
            f.write(f"{c},c{c},{n},x,{top1 + c:.4f}\n")


def test_collect_table_and_plots(tmp_path):
    root = str(tmp_path / "study")
    arms = am.arm_list(am.get_hyper("ablation"))
    for seed, offset in ((0, 0.0), (1, 2.0)):
        for i, arm in enumerate(arms):
            if arm.name == "bce-mgp-instance" and seed == 1:
                continue  # a missing run is listed, the rest still aggregates
            _write_run(root, seed, arm, 50.0 + i + offset)
    results = sr.collect(root, [0, 1], arms)
    assert results["missing"] == [os.path.join(root, "seed1", "bce-mgp-instance")]
    ce = results["arms"]["ce-mgp-instance"]
    assert ce["final"]["top1"]["mean"] == pytest.approx(51.0)
    assert ce["final"]["top1"]["std"] == pytest.approx(np.std([50.0, 52.0], ddof=1))
    assert ce["per_class"]["accuracy"] == pytest.approx([51.0, 52.0, 53.0])
    assert ce["per_class"]["train_count"] == [800, 100, 8]

    table = sr.format_table(results, arms, "final")
    lines = table.splitlines()
    assert lines[0] == "| loss | init | sampler | seeds | overall | many | medium | few |"
    assert lines[1] == "|---|---|---|---|---|---|---|---|"
    assert len(lines) == 2 + len(arms)
    assert lines[2] == ("| CE | mgp | instance | 2 | 51.0 ± 1.4 | 52.0 ± 1.4 | 50.0 ± 1.4 "
                        "| 49.0 ± 1.4 |")
    assert "| BCE | mgp | instance | 1 | 51.0 ± 0.0 |" in lines[3]
    best = sr.format_table(results, arms, "best").splitlines()
    assert best[0].endswith("| best epoch |") and best[2].endswith("| 2.0 ± 0.0 |")
    assert sr.cell(None) == "–" and sr.cell({"mean": float("nan"), "std": 0.0}) == "–"
    conv = sr.format_convergence(results)
    assert conv.splitlines()[0].startswith("| loss | top-1 @ ep 1 | top-1 @ ep 2 |")
    assert "Bal-BCE" in conv
    assert conv.splitlines()[0].endswith("| first epoch ≥ 90% of own final | mean over epochs |")

    results["timing"] = {"runs_s": 1.0}
    out, docs = str(tmp_path / "out"), str(tmp_path / "docs")
    sr.write_outputs(results, out, 10, arms, results_dir=docs, suffix="_ir10")
    for name in ("per_class_ce_vs_balbce_ir10.png", "accuracy_per_epoch_ir10.png",
                 "ablation_ir10.json"):
        assert os.path.getsize(os.path.join(docs, name)) > 0
    assert "Final epoch" in open(os.path.join(out, "results.md")).read()
    # --aggregate-only goes through the same path from the command line
    assert sr.main(["--out", root, "--seeds", "0,1", "--study", "ablation:10"]) == 0
    stored = json.load(open(os.path.join(root, "results.json")))
    assert stored["arms"]["ce-mgp-instance"]["final"]["top1"]["mean"] == pytest.approx(51.0)
    assert "IR 10" in open(os.path.join(root, "results.md")).read()
