"""The one study driver (experiments/study.py): run order, resume, tuning on validation only,
selection of arms and seeds, failures, the command line. Training is a recording stand-in
except in the end-to-end smoke study."""

import os
import shutil

import pytest

from livt_jax import config_lib, train
from livt_jax.experiments import study as driver
from livt_jax.experiments import study_folder as folder
from livt_jax.experiments.definition import MGP_EXPORT, Study, Tuning, get_study
from tests.helpers.common import TINY_MODEL_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# validation top-1 the stand-in reports per BFT base lr: 1e-2 is the best
VAL_BY_BLR = {1e-3: 30.0, 1e-2: 40.0, 3e-2: 35.0}


class FakeTrain:
    """Stands in for train.train_and_evaluate: records (stage, workdir, config) per call."""

    def __init__(self, fail=(), read_test_always=False):
        self.calls, self.fail, self.read_test_always = [], set(fail), read_test_always

    def __call__(self, config, workdir):
        self.calls.append((config.stage, workdir, config))
        if os.path.basename(workdir) in self.fail:
            raise RuntimeError(f"{workdir} broke")
        os.makedirs(workdir, exist_ok=True)
        out = {"export": os.path.join(workdir, "export"), "total_steps": 3}
        if config.stage == "pretrain":
            return out
        top1 = VAL_BY_BLR.get(config.finetune.optim.blr, 50.0)
        out.update(history=[{"epoch": 1.0, "top1": top1}], best_val={"top1": top1, "epoch": 1.0})
        if config.eval.test_at_end or self.read_test_always:
            out.update(final={"top1": top1 - 1, "epoch": 1.0}, best={"top1": top1, "epoch": 1.0},
                       per_class={"final": [top1 - 1], "best": [top1]})
        return out

    def runs(self):
        """(stage, workdir relative to the runs folder) per call, in call order."""
        return [(stage, os.path.join(*workdir.split(os.sep)[-2:])) for stage, workdir, _ in self.calls]


@pytest.fixture
def fake_train(monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(train, "train_and_evaluate", fake)
    return fake


def small_study(tuning=True):
    return Study(name="small", base=config_lib.base_config(), seeds=(0, 1),
                 arms={"mgp_ce": {"finetune.loss": "ce", "finetune.init_from": MGP_EXPORT},
                       "scratch": {"finetune.loss": "bal_bce", "finetune.init_from": ""}},
                 tuning=Tuning("finetune.optim.blr", (1e-3, 1e-2, 3e-2), "mgp_ce", 0)
                 if tuning else None)


def test_order_tuning_and_records(tmp_path, fake_train):
    out, results = str(tmp_path / "runs"), str(tmp_path / "records")
    d = driver.Driver(small_study(), out, results)
    assert d.run(["mgp_ce", "scratch"], [0, 1]) == []
    assert fake_train.runs() == [
        ("pretrain", "seed0/mgp"), ("finetune", "tune/0.001"), ("finetune", "tune/0.01"),
        ("finetune", "tune/0.03"),  # the tuning, on seed 0's MGP
        ("finetune", "seed0/mgp_ce"), ("pretrain", "seed1/mgp"), ("finetune", "seed1/mgp_ce"),
        ("finetune", "seed0/scratch"), ("finetune", "seed1/scratch")]  # whole arms in turn
    configs = {os.path.join(*w.split(os.sep)[-2:]): c for _, w, c in fake_train.calls}
    for value in ("0.001", "0.01", "0.03"):  # tuning never reads test
        assert configs[f"tune/{value}"].eval.test_at_end is False
    for seed in (0, 1):
        arm = configs[f"seed{seed}/mgp_ce"]
        assert arm.finetune.optim.blr == 1e-2 and arm.eval.test_at_end is True
        assert arm.finetune.init_from == os.path.join(out, f"seed{seed}", "mgp", "export")
        assert arm.seed == seed and arm.finetune.loss == "ce"
        assert configs[f"seed{seed}/scratch"].finetune.init_from == ""
    choice = folder.read_choice(results)
    assert choice["value"] == 1e-2
    assert choice["validation_top1"] == {"0.001": 30.0, "0.01": 40.0, "0.03": 35.0}
    records = folder.read_records(results)
    assert set(records) == {"mgp", "mgp_ce", "scratch"} and set(records["scratch"]) == {0, 1}
    assert records["mgp_ce"][1]["test_best"]["top1"] == 40.0
    assert records["mgp_ce"][1]["settings"]["blr"] == 1e-2
    assert not any(k.startswith("test_") for k in folder.read_tune_records(results)["0.03"])


def test_resume_skips_finished_runs(tmp_path, fake_train):
    out, results = str(tmp_path / "runs"), str(tmp_path / "records")
    driver.Driver(small_study(), out, results).run(["mgp_ce", "scratch"], [0, 1])
    fake_train.calls.clear()
    driver.Driver(small_study(), out, results).run(["mgp_ce", "scratch"], [0, 1])
    assert fake_train.runs() == []
    # a run without summary nor record runs again, and only it (its MGP is found finished)
    shutil.rmtree(os.path.join(out, "seed1", "mgp_ce"))
    os.remove(folder.record_path(results, 1, "mgp_ce"))
    driver.Driver(small_study(), out, results).run(["mgp_ce", "scratch"], [0, 1])
    assert fake_train.runs() == [("finetune", "seed1/mgp_ce")]
    # a summary without its record: the record is written from it, nothing trains
    fake_train.calls.clear()
    os.remove(folder.record_path(results, 0, "scratch"))
    driver.Driver(small_study(), out, results).run(["scratch"], [0])
    assert fake_train.runs() == [] and os.path.exists(folder.record_path(results, 0, "scratch"))
    # records alone (a fresh runs folder) are finished runs too
    driver.Driver(small_study(), str(tmp_path / "fresh"), results).run(["mgp_ce", "scratch"],
                                                                        [0, 1])
    assert fake_train.runs() == []


def test_committed_cifar_records_are_finished_runs(tmp_path, fake_train):
    results = str(tmp_path / "cifar10_lt")
    shutil.copytree(os.path.join(ROOT, "docs", "results", "cifar10_lt"), results)
    study = get_study("cifar10_lt:/no/data")
    failed = driver.Driver(study, str(tmp_path / "runs"), results).run(list(study.arms),
                                                                        list(study.seeds))
    assert failed == [] and fake_train.runs() == []


def test_tuning_refuses_a_summary_with_test_results(tmp_path, monkeypatch):
    fake = FakeTrain(read_test_always=True)
    monkeypatch.setattr(train, "train_and_evaluate", fake)
    results = str(tmp_path / "records")
    d = driver.Driver(small_study(), str(tmp_path / "runs"), results)
    with pytest.raises(RuntimeError, match=r"tuning run .*tune/0.001 holds test results"):
        d.run(["mgp_ce"], [0])
    assert folder.read_choice(results) is None
    assert not os.path.exists(folder.tune_record_path(results, 1e-3))


def test_a_failure_is_reported_and_the_study_goes_on(tmp_path, monkeypatch):
    fake = FakeTrain(fail={"mgp_ce"})
    monkeypatch.setattr(train, "train_and_evaluate", fake)
    d = driver.Driver(small_study(tuning=False), str(tmp_path / "runs"))
    assert d.run(["mgp_ce", "scratch"], [0, 1]) == ["mgp_ce seed 0", "mgp_ce seed 1"]
    assert [r for r in fake.runs() if "scratch" in r[1]] == [
        ("finetune", "seed0/scratch"), ("finetune", "seed1/scratch")]
    # a failed MGP is tried once; its seed's MGP arms fail, the rest runs
    fake = FakeTrain(fail={"mgp"})
    monkeypatch.setattr(train, "train_and_evaluate", fake)
    study = Study(name="s", base=config_lib.base_config(), seeds=(0,),
                  arms={"a": {"finetune.init_from": MGP_EXPORT},
                        "b": {"finetune.init_from": MGP_EXPORT, "finetune.loss": "bce"},
                        "c": {"finetune.init_from": ""}})
    d = driver.Driver(study, str(tmp_path / "runs2"))
    assert d.run(["a", "b", "c"], [0]) == ["a seed 0", "b seed 0"]
    assert fake.runs() == [("pretrain", "seed0/mgp"), ("finetune", "seed0/c")]


def test_cli_selects_arms_seeds_epochs_and_model(tmp_path, fake_train, capsys):
    out = str(tmp_path / "ir100")
    args = ["--study", "ablation:100", "--out", out, "--compile-cache", "none",
            "--arms", "bal_bce-scratch-instance,bce-mgp-instance", "--seeds", "2",
            "--epochs-scale", "0.5", *TINY_MODEL_FLAGS]
    assert driver.main(args) == 0
    assert fake_train.runs() == [("pretrain", "seed2/mgp"), ("finetune", "seed2/bce-mgp-instance"),
                                 ("finetune", "seed2/bal_bce-scratch-instance")]
    pre, bce = fake_train.calls[0][2], fake_train.calls[1][2]
    assert (pre.pretrain.epochs, bce.finetune.epochs) == (30.0, 15.0)
    assert bce.model.embed_dim == 32 and bce.data.imbalance_ratio == 100
    assert os.path.exists(os.path.join(out, "seed2", "bce-mgp-instance", "summary.json"))
    # another study fine-tunes these MGP exports (--mgp-from): no MGP of its own
    fake_train.calls.clear()
    assert driver.main(["--study", "tau:10", "--out", str(tmp_path / "ir10"), "--seeds", "2",
                        "--mgp-from", out, "--arms", "bal_ce-mgp-instance",
                        "--compile-cache", "none"]) == 0
    ((stage, workdir, config),) = fake_train.calls
    assert stage == "finetune" and config.data.imbalance_ratio == 10
    assert config.finetune.init_from == os.path.abspath(os.path.join(out, "seed2", "mgp", "export"))


@pytest.mark.parametrize("args, message", [
    (["--study", "ablation", "--arms", "ce-mgp-instance,nope"], "unknown arm(s) nope for study"),
    (["--study", "nope"], "unknown study 'nope'; expected one of ablation, tau, cifar10_lt"),
    (["--study", "cifar10_lt"], "needs its data folder"),
    (["--study", "ablation:abc"], "the imbalance ratio must be a number, got 'abc'"),
    (["--study", "ablation", "--seeds", "0,x"], "--seeds must be comma-separated integers"),
    (["--study", "ablation", "--config.model.nope=1"], "the config has no key 'model.nope'"),
    (["--study", "ablation", "--bogus"], "unrecognised argument '--bogus'"),
])
def test_cli_usage_errors_are_one_line(tmp_path, fake_train, capsys, args, message):
    assert driver.main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert fake_train.calls == []


@pytest.mark.e2e
@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path, monkeypatch, capsys):
    """A tiny Animal-MNIST study through the driver: MGP, an MGP arm and a scratch arm
    train for real; the rerun trains nothing."""
    out, results = str(tmp_path / "runs"), str(tmp_path / "records")
    args = ["--study", "ablation", "--out", out, "--results", results, "--seeds", "0",
            "--arms", "ce-mgp-instance,bal_bce-scratch-instance", "--epochs-scale", str(1 / 60),
            "--compile-cache", "none", "--config.eval.batch_size=256", *TINY_MODEL_FLAGS]
    assert driver.main(args) == 0
    records = folder.read_records(results)
    assert set(records) == {"mgp", "ce-mgp-instance", "bal_bce-scratch-instance"}
    assert records["mgp"][0]["total_steps"] > 0 and records["mgp"][0]["final_loss"] > 0
    for arm, init in (("ce-mgp-instance", "mgp"), ("bal_bce-scratch-instance", "scratch")):
        record = records[arm][0]
        assert record["settings"]["init"] == init and record["settings"]["model"]["embed_dim"] == 32
        assert 0 <= record["test_final"]["top1"] <= 100
        assert len(record["test_final_per_class"]) == 10
    summary = folder.read_summary(folder.run_dir(out, 0, "ce-mgp-instance"))
    assert summary["config"]["finetune"]["init_from"] == os.path.abspath(
        os.path.join(out, "seed0", "mgp", "export"))
    monkeypatch.setattr(train, "train_and_evaluate", FakeTrain(fail={"mgp", "ce-mgp-instance",
                                                                     "bal_bce-scratch-instance"}))
    capsys.readouterr()
    assert driver.main(args) == 0  # every run is finished: the stand-in that fails never runs
    assert capsys.readouterr().out.count("[study] skip") == 2
