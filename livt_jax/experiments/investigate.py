"""Follow-up runs for the ablation, judged on the validation set (not the test set).

    python -m livt_jax.experiments.investigate --study runs/ablation_ir100 \
        --out runs/investigate_ir100 --seeds 0,1

Each variant is one ablation arm with a few config keys changed (`VARIANTS`),
fine-tuned from the study's MGP export of the same seed, in its own workdir
`OUT/seed{S}/{variant}` (skipped when its summary.json exists). Every variant
and the study's own 30-epoch arms are then scored on the balanced validation
set of `validation.py`; `OUT/investigate.json` holds validation and (for
reference only) final test metrics.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from livt_jax import console
from livt_jax.experiments import study_folder as folder
from livt_jax.experiments import study_report as sr
from livt_jax.experiments import validation
from livt_jax.experiments.study import enable_compile_cache, parse_seeds, run_one
from livt_jax.experiments.configs import animal_mnist as study_config
from livt_jax.experiments.configs.animal_mnist import Arm

# name -> (arm, overrides on top of the study config)
VARIANTS: dict[str, tuple[Arm, dict[str, Any]]] = {
    "bal_ce-ep60": (Arm("bal_ce"), {"finetune.epochs": 60.0}),
    "bal_bce-ep60": (Arm("bal_bce"), {"finetune.epochs": 60.0}),
    "bal_bce-blr6e-3": (Arm("bal_bce"), {"finetune.optim.blr": 6e-3}),
    "bal_bce-tau0.5": (Arm("bal_bce"), {"finetune.tau": 0.5}),
    "bal_bce-tau1.5": (Arm("bal_bce"), {"finetune.tau": 1.5}),
    # milder BFT augmentation for 28-px images: crops keep >= 35%, no RandAugment
    "bal_ce-mildaug": (Arm("bal_ce"), {"finetune.aug.scale_min": 0.35,
                                          "finetune.aug.randaug_num_ops": 0}),
    "bal_bce-mildaug": (Arm("bal_bce"), {"finetune.aug.scale_min": 0.35,
                                            "finetune.aug.randaug_num_ops": 0}),
}
BASELINES = ("bal_ce-mgp-instance", "bal_bce-mgp-instance")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = console.command_parser("python -m livt_jax.experiments.investigate", __doc__)
    parser.add_argument("--study", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--imbalance-ratio", type=float, default=100.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    enable_compile_cache(os.path.join(args.study, ".jax_cache"))
    seeds = parse_seeds(args.seeds)
    names = [n for n in args.variants.split(",") if n]
    rows: dict[str, dict[int, dict]] = {}
    source = None
    for seed in seeds:
        mgp = os.path.abspath(os.path.join(folder.run_dir(args.study, seed, folder.MGP), "export"))
        runs = []
        for name in names:
            arm, overrides = VARIANTS[name]
            config = study_config.build_config(args.imbalance_ratio, seed, "finetune", arm=arm,
                                               mgp_export=mgp)
            for key, value in overrides.items():
                study_config.set_key(config, key, value)
            summary = run_one(folder.run_dir(args.out, seed, name), lambda c=config: c,
                              {"arm": name, "seed": seed, "overrides": overrides})
            runs.append((name, config, summary))
        for name in BASELINES:
            summary = folder.read_summary(folder.run_dir(args.study, seed, name))
            if summary is not None:
                arm = next(a for a in study_config.arm_list(study_config.get_hyper("ablation"))
                           if a.name == name)
                runs.append((name, study_config.build_config(
                    args.imbalance_ratio, seed, "finetune", arm=arm, mgp_export=mgp), summary))
        for name, config, summary in runs:
            if source is None:
                source = validation.validation_source(config)
            val = validation.score_export(config, summary["export"], source)
            rows.setdefault(name, {})[seed] = {"val": val, "test_final": summary["final"],
                                               "wall_s": summary.get("wall_s")}
            print(f"seed {seed} {name:24s} val top-1 {val['top1']:.2f} few "
                  f"{val.get('few', float('nan')):.2f} | test top-1 "
                  f"{summary['final']['top1']:.2f}", flush=True)
    table = {name: {split: {m: sr.mean_std([r[key].get(m) for r in by_seed.values()])
                            for m in sr.METRICS}
                        for split, key in (("val", "val"), ("test_final", "test_final"))}
             for name, by_seed in rows.items()}
    folder.write_json(os.path.join(args.out, "investigate.json"), {
        "per_seed": rows, "mean_std_n": table, "variants": {n: VARIANTS[n][1] for n in names},
        "validation_skipped_classes": source.skipped_classes if source else []})
    lines = ["| run | val overall | val many | val medium | val few | test overall | test few |",
             "|---|---|---|---|---|---|---|"]
    for name, t in table.items():
        cells = [sr.cell(dict(zip(("mean", "std"), t["val"][m][:2]))) for m in sr.METRICS]
        cells += [sr.cell(dict(zip(("mean", "std"), t["test_final"][m][:2])))
                  for m in ("top1", "few")]
        lines.append(f"| {name} ({len(rows[name])} seeds) | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    with open(os.path.join(args.out, "investigate.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(text, flush=True)


if __name__ == "__main__":
    main()
