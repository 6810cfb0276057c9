"""Trains a study's runs: one MGP run per seed, then every (arm, seed) BFT run.

    python -m livt_jax.experiments.runner --study tau --imbalance-ratio 100 \
        --seeds 0,1,2 --out runs/tau_ir100 [--arms NAME,...] [--epochs-scale 0.1] \
        [--mgp-from runs/other_study]

The arms come from `experiments/configs/animal_mnist.py` (`get_hyper(study)`).
MGP runs in `OUT/seed{S}/mgp` and its export is shared by every MGP-initialised
arm of that seed; each BFT arm runs in `OUT/seed{S}/{arm.name}`. All MGP runs
go first, then the arms in the study's order, every seed of one arm before the
next arm, so a study cut short has whole arms. A run is skipped when its
`summary.json` exists, so an interrupted study resumes (an interrupted run
resumes from its checkpoint). Aggregation and tables: `experiments/study_report.py`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Mapping, Optional, Sequence

from livt_jax import console, report
from livt_jax.experiments.configs import animal_mnist as study_config


def read_json(path: str) -> Optional[dict]:
    """The JSON object at `path`, or None when the file does not exist."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str, obj: Any) -> None:
    """Writes atomically (a reader never sees half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, default=float)
    os.replace(tmp, path)


def last_pretrain_loss(workdir: str) -> Optional[float]:
    """The last logged MGP training loss in `workdir/metrics.jsonl` (None if none)."""
    losses = [r["loss"] for r in report.read_metrics(os.path.join(workdir, "metrics.jsonl"))
              if r.get("stage") == "pretrain" and "loss" in r]
    return losses[-1] if losses else None


def run_one(config, workdir: str, extra: Mapping[str, Any]) -> dict:
    """Trains one stage in `workdir` unless its summary.json exists; returns the summary."""
    path = os.path.join(workdir, "summary.json")
    done = read_json(path)
    if done is not None:
        print(f"[runner] skip {workdir} (summary.json exists)", flush=True)
        return done
    from livt_jax import train
    print(f"[runner] run  {workdir}", flush=True)
    start = time.time()
    result = train.train_and_evaluate(config, workdir)
    if "stopped_at" in result:
        raise RuntimeError(f"{workdir} stopped at step {result['stopped_at']}")
    summary = {k: v for k, v in result.items() if k != "state"}
    summary.update(extra, wall_s=time.time() - start, config=config.to_dict())
    if config.stage == "pretrain":
        summary["final_loss"] = last_pretrain_loss(workdir)
    write_json(path, summary)
    print(f"[runner] done {workdir} in {summary['wall_s']:.0f} s", flush=True)
    return summary


def run_study(imbalance_ratio: float, seeds: Sequence[int], out: str,
              arms: Sequence[study_config.Arm], epochs_scale: float = 1.0,
              mgp_from: str = "") -> list[str]:
    """Runs every MGP, then every (arm, seed); returns the workdirs of runs that failed.

    With `mgp_from` (another study folder), the arms fine-tune that folder's
    finished MGP exports instead (same seed), and no MGP is trained here.
    """
    failed, exports = [], {}
    for seed in seeds:
        mgp_dir = os.path.join(mgp_from or out, f"seed{seed}", "mgp")
        try:
            if mgp_from:
                summary = read_json(os.path.join(mgp_dir, "summary.json"))
                if summary is None:
                    raise FileNotFoundError(f"no finished MGP run in {mgp_dir}")
            else:
                summary = run_one(study_config.build_config(imbalance_ratio, seed, "pretrain",
                                                            epochs_scale=epochs_scale),
                                  mgp_dir, {"arm": "mgp", "seed": seed})
            exports[seed] = os.path.abspath(summary["export"])
        except Exception:  # noqa: BLE001 -- report, go on with the next seed
            traceback.print_exc()
            failed.append(mgp_dir)
    for arm in arms:
        for seed in (s for s in seeds if s in exports):
            workdir = os.path.join(out, f"seed{seed}", arm.name)
            config = study_config.build_config(imbalance_ratio, seed, "finetune", arm=arm,
                                               mgp_export=exports[seed],
                                               epochs_scale=epochs_scale)
            try:
                run_one(config, workdir, {"arm": arm.name, "seed": seed, "loss": arm.loss,
                                          "init": arm.init, "sampler": arm.sampler,
                                          "tau": arm.tau})
            except Exception:  # noqa: BLE001
                traceback.print_exc()
                failed.append(workdir)
    return failed


def enable_compile_cache(directory: str) -> None:
    """JAX's persistent compilation cache, so identical programs compile once."""
    import jax
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def select_arms(arms: Sequence[study_config.Arm], names: str) -> list[study_config.Arm]:
    """The arms named in a comma-separated list ('' = all); an unknown name is an error."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        return list(arms)
    unknown = sorted(set(wanted) - {a.name for a in arms})
    if unknown:
        raise ValueError(f"unknown arms {unknown}; known: {[a.name for a in arms]}")
    return [a for a in arms if a.name in wanted]


def parse_seeds(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = console.command_parser("python -m livt_jax.experiments.runner", __doc__)
    parser.add_argument("--study", default="ablation", help="'ablation' or 'tau'")
    parser.add_argument("--imbalance-ratio", type=float, default=100.0)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", required=True)
    parser.add_argument("--arms", default="", help="comma-separated arm names (default: all)")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiplies both stages' epochs (smoke tests); 1 for the study")
    parser.add_argument("--mgp-from", default="",
                        help="fine-tune the MGP exports of this study folder (no MGP here)")
    parser.add_argument("--compile-cache", default="",
                        help="JAX compilation cache dir ('' = OUT/.jax_cache, 'none' = off)")
    args = parser.parse_args(argv)
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    arms = select_arms(study_config.arm_list(study_config.get_hyper(args.study)), args.arms)
    if args.compile_cache != "none":
        enable_compile_cache(args.compile_cache or os.path.join(args.out, ".jax_cache"))
    seeds = parse_seeds(args.seeds)
    print(f"[runner] {args.study}, IR {args.imbalance_ratio:g}, seeds {seeds}, {len(arms)} "
          "arms: " + ", ".join(a.name for a in arms), flush=True)
    start = time.time()
    failed = run_study(args.imbalance_ratio, seeds, args.out, arms, args.epochs_scale,
                       args.mgp_from)
    print(f"[runner] {time.time() - start:.0f} s", flush=True)
    if failed:
        print("[runner] FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
