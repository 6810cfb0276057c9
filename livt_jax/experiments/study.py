"""Runs the CIFAR-10-LT study (`experiments/configs/cifar10_lt.py`), resumably.

    python -m livt_jax.experiments.study --data-dir CIFAR10 --out runs/cifar10_lt \\
        --results docs/results/cifar10_lt [--seeds 0,1,2] [--source cache --name cifar10]

CIFAR10 is the image folder (`train/<class>/*`, `test/<class>/*`), or with
`--source cache` the folder holding the cache `--name` built from it. Order: MGP
of the tuning seed, the tuning sweep (validation only), then per seed its MGP and
every arm. A run whose `summary.json` exists is skipped, so a stopped study
resumes where it stopped (the run in progress from its last checkpoint). Each
finished run's record goes to `RESULTS/seed{S}_{arm}.json` (MGP: `seed{S}_mgp.json`, tuning runs to
`RESULTS/tune_{value}.json`, the choice to `RESULTS/choice.json`) at once, so
the records can be committed as the study goes. Tables: `study_render`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Optional, Sequence

from livt_jax import console
from livt_jax.experiments import runner
from livt_jax.experiments.configs import cifar10_lt as study
from livt_jax.experiments.hyper import set_key


def run_record(summary: dict, **fields: Any) -> dict:
    """What a BFT run leaves in the results folder: enough to recompute every table."""
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


class Study:
    """One study folder (`out`, the runs) and its results folder (`results`, the records)."""

    def __init__(self, data_dir: str, out: str, results: str, source: str, name: str):
        self.base = study.get_config(data_dir, source, name)
        self.out, self.results = out, results
        os.makedirs(results, exist_ok=True)

    def mgp(self, seed: int) -> str:
        """Trains (or finds) seed's MGP; returns its export."""
        config = self.base.copy_and_resolve_references()
        config.seed, config.stage = seed, "pretrain"
        summary = runner.run_one(config, os.path.join(self.out, f"seed{seed}", "mgp"),
                                 {"arm": "mgp", "seed": seed})
        runner.write_json(os.path.join(self.results, f"seed{seed}_mgp.json"), {
            "arm": "mgp", "seed": seed, "wall_s": summary["wall_s"],
            "final_loss": summary["final_loss"], "total_steps": summary["total_steps"]})
        return os.path.abspath(summary["export"])

    def finetune(self, seed: int, arm: str, export: str, workdir: str,
                 overrides: dict[str, Any]) -> dict:
        config = self.base.copy_and_resolve_references()
        config.seed, config.stage = seed, "finetune"
        for key, value in {**study.arm_overrides(arm, export), **overrides}.items():
            set_key(config, key, value)
        return runner.run_one(config, workdir, {"arm": arm, "seed": seed})

    def tune(self, export: str) -> Any:
        """The tuning sweep on validation; returns (and records) the chosen value."""
        path = os.path.join(self.results, "choice.json")
        done = runner.read_json(path)
        if done is not None:
            return done["value"]
        scores = {}
        for value in study.TUNE_VALUES:
            summary = self.finetune(study.TUNE_SEED, study.TUNE_ARM, export,
                                    os.path.join(self.out, "tune", f"{value:g}"),
                                    {study.TUNE_KEY: value, "eval.test_at_end": False})
            if "final" in summary or "best" in summary:
                raise RuntimeError("a tuning run read the test split")
            scores[value] = summary["best_val"]["top1"]
            runner.write_json(os.path.join(self.results, f"tune_{value:g}.json"), run_record(
                summary, arm=study.TUNE_ARM, seed=study.TUNE_SEED, tuned={study.TUNE_KEY: value}))
        value = max(scores, key=scores.get)
        runner.write_json(path, {"key": study.TUNE_KEY, "value": value,
                                 "validation_top1": {f"{v:g}": s for v, s in scores.items()},
                                 "rule": "highest validation top-1 at the best epoch"})
        return value

    def run(self, seeds: Sequence[int]) -> None:
        chosen = self.tune(self.mgp(study.TUNE_SEED))
        for seed in seeds:
            export = self.mgp(seed)
            for arm in study.ARMS:
                summary = self.finetune(seed, arm, export,
                                        os.path.join(self.out, f"seed{seed}", arm),
                                        {study.TUNE_KEY: chosen})
                runner.write_json(os.path.join(self.results, f"seed{seed}_{arm}.json"),
                                  run_record(summary, arm=arm, seed=seed))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = console.command_parser("python -m livt_jax.experiments.study", __doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True, help="the runs (checkpoints, exports)")
    parser.add_argument("--results", required=True, help="the per-run records (JSON)")
    parser.add_argument("--seeds", default=",".join(map(str, study.SEEDS)))
    parser.add_argument("--source", default="image_folder", choices=("image_folder", "cache"))
    parser.add_argument("--name", default="", help="the cache's name (--source cache)")
    args = parser.parse_args(argv)
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    runner.enable_compile_cache(os.path.join(args.out, ".jax_cache"))
    start = time.time()
    Study(args.data_dir, args.out, args.results, args.source, args.name).run(
        runner.parse_seeds(args.seeds))
    print(f"[study] {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
