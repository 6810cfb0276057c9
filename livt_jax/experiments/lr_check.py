"""Train-side learning-rate check for the ablation's BFT stage (no test-set selection).

    python -m livt_jax.experiments.lr_check --mgp runs/ablation_ir100/seed0/mgp/export \
        --blrs 3e-3,6e-3 --losses ce,bal_bce --out runs/lr_check_ir100

Fine-tunes each (loss, blr) once (seed 0, MGP init, instance sampling) with the
ablation's config and prints the mean of the last 5 logged *training* losses,
the criterion used to pick `finetune.optim.blr` in the Animal-MNIST studies
(`experiments/configs/animal_mnist.py`).
The test metrics the run also logs are not used for the choice.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from livt_jax import console, report
from livt_jax.experiments import study_folder as folder
from livt_jax.experiments.configs import animal_mnist as study_config


def train_loss_tail(metrics_path: str, n: int = 5) -> float:
    """Mean of the last `n` logged training losses in a metrics.jsonl."""
    losses = [r["loss"] for r in report.read_metrics(metrics_path)
              if "loss" in r and "eval_top1" not in r]
    return float(np.mean(losses[-n:]))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = console.command_parser("python -m livt_jax.experiments.lr_check", __doc__)
    parser.add_argument("--mgp", required=True, help="MGP params export (seed 0)")
    parser.add_argument("--imbalance-ratio", type=float, default=100.0)
    parser.add_argument("--blrs", default="1e-3,3e-3,6e-3")
    parser.add_argument("--losses", default="ce,bal_bce")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from livt_jax import train
    rows = {}
    for loss in args.losses.split(","):
        for blr in (float(b) for b in args.blrs.split(",")):
            workdir = os.path.join(args.out, f"{loss}_blr{blr:g}")
            metrics = os.path.join(workdir, "metrics.jsonl")
            if not os.path.exists(os.path.join(workdir, "final_per_class.csv")):
                config = study_config.build_config(args.imbalance_ratio, 0, "finetune",
                                                  arm=study_config.Arm(loss),
                                         mgp_export=os.path.abspath(args.mgp))
                config.finetune.optim.blr = blr
                train.train_and_evaluate(config, workdir)
            rows[f"{loss}_blr{blr:g}"] = train_loss_tail(metrics)
            print(f"{loss:8s} blr {blr:g}: final training loss (last 5 logs) "
                  f"{rows[f'{loss}_blr{blr:g}']:.4f}", flush=True)
    folder.write_json(os.path.join(args.out, "train_loss.json"), rows)


if __name__ == "__main__":
    main()
