"""Runs any study (`experiments/definition.py`) and resumes it where it stopped.

    python -m livt_jax.experiments.study --study NAME[:ARG] --out runs/NAME \\
        [--results docs/results/NAME] [--arms A,B] [--seeds 0,1,2] [--epochs-scale 0.1] \\
        [--mgp-from runs/OTHER] [--compile-cache DIR|none] [--config.KEY=VALUE ...]

Studies: `ablation[:IR]`, `tau[:IR]` (Animal-MNIST-LT) and `cifar10_lt:DATA_DIR`.
Order: the tuning sweep when the study has one (on validation only: its runs set
`eval.test_at_end=False`, and a tuning summary holding test results stops the
study), then every (arm, seed), every seed of one arm before the next arm, so a
study cut short has whole arms. A seed's MGP run is trained when an arm first needs
its export, and shared by every MGP-initialised arm of that seed (with `--mgp-from`,
the exports of another study's runs folder are fine-tuned instead).

Files (`experiments/study_folder.py`): runs in `OUT/seed{S}/{arm}` (MGP:
`OUT/seed{S}/mgp`, tuning: `OUT/tune/{value}`); with `--results`, each finished
run's record at once in `RESULTS/seed{S}_{arm}.json` (`tune_{value}.json`,
`choice.json`), so records can be committed as the study goes. A run whose
summary (or record) exists is skipped; an interrupted run resumes from its
checkpoint. A failed run is reported and the study goes on (exit status 1 at the
end). `--config.KEY=VALUE` overrides the study's base config (e.g. a smaller model
for a smoke test). Tables: `study_report` (Animal-MNIST), `study_render` (CIFAR-10-LT).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import sys
import time
import traceback
from typing import Any, Callable, Mapping, Optional, Sequence

from livt_jax import console, report
from livt_jax.experiments import definition
from livt_jax.experiments import study_folder as folder
from livt_jax.experiments.definition import MGP_EXPORT, Study
from livt_jax.experiments.hyper import set_key

TEST_KEYS = ("final", "best", "test_final", "test_best")  # what a test read leaves behind


def last_pretrain_loss(workdir: str) -> Optional[float]:
    """The last logged MGP training loss in `workdir/metrics.jsonl` (None if none)."""
    losses = [r["loss"] for r in report.read_metrics(os.path.join(workdir, "metrics.jsonl"))
              if r.get("stage") == "pretrain" and "loss" in r]
    return losses[-1] if losses else None


def run_one(workdir: str, make_config: Callable[[], Any], extra: Mapping[str, Any]) -> dict:
    """Trains `make_config()` in `workdir` unless its summary exists; returns the summary."""
    done = folder.read_summary(workdir)
    if done is not None:
        print(f"[study] skip {workdir} (summary.json exists)", flush=True)
        return done
    config = make_config()
    from livt_jax import train
    print(f"[study] run  {workdir}", flush=True)
    start = time.time()
    result = train.train_and_evaluate(config, workdir)
    if "stopped_at" in result:
        raise RuntimeError(f"{workdir} stopped at step {result['stopped_at']}")
    summary = {k: v for k, v in result.items() if k != "state"}
    summary.update(extra, wall_s=time.time() - start, config=config.to_dict())
    if config.stage == "pretrain":
        summary["final_loss"] = last_pretrain_loss(workdir)
    os.makedirs(workdir, exist_ok=True)
    folder.write_summary(workdir, summary)
    print(f"[study] done {workdir} in {summary['wall_s']:.0f} s", flush=True)
    return summary


def run_record(summary: dict, **fields: Any) -> dict:
    """What a BFT run leaves in the records folder: enough to recompute every table."""
    config = summary["config"]
    record = dict(fields, wall_s=summary["wall_s"],
                  settings={"finetune": {k: config["finetune"][k] for k in (
                      "loss", "tau", "epochs", "batch_size", "label_smoothing", "drop_path")},
                      "blr": config["finetune"]["optim"]["blr"],
                      "init": "mgp" if config["finetune"]["init_from"] else "scratch",
                      "model": config["model"], "data": config["data"]},
                  best_val=summary["best_val"],
                  val_history=[{k: h[k] for k in ("epoch", "top1", "many", "medium", "few")
                                if k in h} for h in summary["history"]])
    for name in ("final", "best"):
        if name in summary:
            record[f"test_{name}"] = summary[name]
            record[f"test_{name}_per_class"] = summary["per_class"][name]
    return record


def mgp_record(summary: dict, seed: int) -> dict:
    return {"arm": folder.MGP, "seed": seed, "wall_s": summary["wall_s"],
            "final_loss": summary["final_loss"], "total_steps": summary["total_steps"]}


def check_validation_only(summary: Mapping[str, Any], where: str) -> None:
    """A tuning run's summary or record must hold no test result."""
    found = [k for k in TEST_KEYS if k in summary]
    if found:
        raise RuntimeError(f"tuning run {where} holds test results {found}; tuning must "
                           "read validation only (eval.test_at_end=False)")


class Driver:
    """Runs one study into `out` (runs) and, when given, `results` (records)."""

    def __init__(self, study: Study, out: str, results: str = "", epochs_scale: float = 1.0,
                 mgp_from: str = ""):
        self.study, self.out, self.results = study, out, results
        self.epochs_scale, self.mgp_from = epochs_scale, mgp_from
        self._exports: dict[int, Any] = {}  # seed -> export path, or the MGP's exception
        if results:
            os.makedirs(results, exist_ok=True)

    def config(self, seed: int, stage: str, overrides: Mapping[str, Any]):
        """The study's config of one run, MGP_EXPORT resolved to the seed's export."""
        resolved = {k: self.export(seed) if v == MGP_EXPORT else v for k, v in overrides.items()}
        return definition.config_for(self.study, seed, stage, resolved, self.epochs_scale)

    def export(self, seed: int) -> str:
        """The seed's MGP export (trained on first use; a failure is not retried)."""
        if seed not in self._exports:
            try:
                self._exports[seed] = self._mgp(seed)
            except Exception as e:  # noqa: BLE001 -- remembered, re-raised for every arm
                self._exports[seed] = e
                raise
        if isinstance(self._exports[seed], Exception):
            raise RuntimeError(f"the MGP run of seed {seed} failed (see above)")
        return self._exports[seed]

    def _mgp(self, seed: int) -> str:
        if self.mgp_from:
            workdir = folder.run_dir(self.mgp_from, seed, folder.MGP)
            summary = folder.read_summary(workdir)
            if summary is None:
                raise FileNotFoundError(f"no finished MGP run in {workdir} (--mgp-from)")
        else:
            summary = run_one(folder.run_dir(self.out, seed, folder.MGP),
                              lambda: self.config(seed, "pretrain", self.study.mgp),
                              {"arm": folder.MGP, "seed": seed})
            self._record(folder.record_path(self.results, seed, folder.MGP),
                         lambda: mgp_record(summary, seed))
        return os.path.abspath(summary["export"])

    def _record(self, path: str, make: Callable[[], dict]) -> None:
        if self.results and not os.path.exists(path):
            folder.write_json(path, make())

    def _recorded(self, path: str) -> Optional[dict]:
        return folder.read_json(path) if self.results else None

    def tune(self) -> dict[str, Any]:
        """{key: the chosen value} of the study's tuning sweep ({} without one)."""
        tuning = self.study.tuning
        if tuning is None:
            return {}
        choice = folder.read_choice(self.results) if self.results else None
        if choice is None:
            scores = {v: self._tune_run(v) for v in tuning.values}
            choice = {"key": tuning.key, "value": tuning.select(scores),
                      f"validation_{tuning.metric}": {folder.value_name(v): s
                                                      for v, s in scores.items()},
                      "rule": tuning.rule}
            if self.results:
                folder.write_choice(self.results, choice)
        print(f"[study] tuned {tuning.key} = {choice['value']:g}", flush=True)
        return {tuning.key: choice["value"]}

    def _tune_run(self, value: Any) -> float:
        """The validation score of one tuning value (trained unless recorded)."""
        tuning = self.study.tuning
        path = folder.tune_record_path(self.results, value)
        record = self._recorded(path)
        if record is None:
            workdir = folder.tune_dir(self.out, value)
            overrides = {**self.study.arms[tuning.arm], tuning.key: value,
                         "eval.test_at_end": False}
            summary = run_one(workdir, lambda: self.config(tuning.seed, "finetune", overrides),
                              {"arm": tuning.arm, "seed": tuning.seed})
            check_validation_only(summary, workdir)
            record = run_record(summary, arm=tuning.arm, seed=tuning.seed,
                                tuned={tuning.key: value})
            self._record(path, lambda: record)
        check_validation_only(record, path)
        return record["best_val"][tuning.metric]

    def run_arm(self, arm: str, seed: int, tuned: Mapping[str, Any]) -> None:
        path = folder.record_path(self.results, seed, arm)
        if self._recorded(path) is not None:
            print(f"[study] skip {arm} seed {seed} ({path} exists)", flush=True)
            return
        overrides = {**self.study.arms[arm], **tuned}
        summary = run_one(folder.run_dir(self.out, seed, arm),
                          lambda: self.config(seed, "finetune", overrides),
                          {"arm": arm, "seed": seed})
        self._record(path, lambda: run_record(summary, arm=arm, seed=seed))

    def run(self, arms: Sequence[str], seeds: Sequence[int]) -> list[str]:
        """Tunes, then runs every (arm, seed); returns the runs that failed."""
        tuned = self.tune()
        failed = []
        for arm in arms:
            for seed in seeds:
                try:
                    self.run_arm(arm, seed, tuned)
                except Exception:  # noqa: BLE001 -- report, go on with the next run
                    traceback.print_exc()
                    failed.append(f"{arm} seed {seed}")
        return failed


def enable_compile_cache(directory: str) -> None:
    """JAX's persistent compilation cache, so identical programs compile once."""
    import jax
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None


def with_overrides(study: Study, args: Sequence[str]) -> Study:
    """The study with `--config.KEY=VALUE` arguments set in its base config (a value is a
    Python literal, or the text itself where the key holds a string)."""
    base = study.base.copy_and_resolve_references()
    for arg in args:
        key, eq, text = arg[len("--config."):].partition("=")
        if not arg.startswith("--config.") or not eq:
            raise ValueError(f"unrecognised argument {arg!r}; expected --config.KEY=VALUE")
        try:
            old = functools.reduce(lambda node, part: node[part], key.split("."), base)
            value = text if isinstance(old, str) else ast.literal_eval(text)
        except KeyError:
            raise ValueError(f"--config.{key}: the config has no key {key!r}") from None
        except (ValueError, SyntaxError):
            raise ValueError(f"--config.{key}: {text!r} is not a Python literal") from None
        try:
            set_key(base, key, value)
        except (KeyError, TypeError) as e:
            raise ValueError(f"--config.{key}={text}: {console.one_line(e)}") from None
    return dataclasses.replace(study, base=base)


def build_parser() -> console.ArgumentParser:
    parser = console.command_parser("python -m livt_jax.experiments.study", __doc__)
    parser.add_argument("--study", required=True,
                        help="NAME[:ARG]: ablation[:IR], tau[:IR], cifar10_lt:DATA_DIR")
    parser.add_argument("--out", required=True, help="the runs folder (checkpoints, exports)")
    parser.add_argument("--results", default="",
                        help="the records folder (one JSON per finished run); '' = none")
    parser.add_argument("--seeds", default="", help="comma-separated (default: the study's)")
    parser.add_argument("--arms", default="", help="comma-separated arm names (default: all)")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiplies both stages' epochs (smoke tests); 1 for the study")
    parser.add_argument("--mgp-from", default="",
                        help="fine-tune the MGP exports of this runs folder (no MGP here)")
    parser.add_argument("--compile-cache", default="",
                        help="JAX compilation cache dir ('' = OUT/.jax_cache, 'none' = off)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    try:
        study = with_overrides(definition.get_study(args.study), extra)
        arms = study.select_arms(args.arms)
        seeds = parse_seeds(args.seeds) if args.seeds else list(study.seeds)
    except ValueError as e:
        return console.report_error(e, usage=True)
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    if args.compile_cache != "none":
        enable_compile_cache(args.compile_cache or os.path.join(args.out, ".jax_cache"))
    print(f"[study] {study.name}, seeds {seeds}, {len(arms)} arms: {', '.join(arms)}",
          flush=True)
    start = time.time()
    driver = Driver(study, args.out, args.results, args.epochs_scale, args.mgp_from)
    try:
        failed = driver.run(arms, seeds)
    except Exception as e:  # noqa: BLE001 -- the tuning failed: no arm can run
        traceback.print_exc()
        return console.report_error(e, usage=False, hint="")
    print(f"[study] {time.time() - start:.0f} s", flush=True)
    if failed:
        print("[study] FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
