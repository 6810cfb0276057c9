"""Aggregates a study's finished runs into tables, plots and a results JSON.

    python -m livt_jax.experiments.study_report --study ablation:100 \
        --out runs/ablation_ir100 [--seeds 0,1,2] [--results-dir docs/results]

Reads `OUT/seed{S}/{arm}/summary.json` (+ `final_per_class.csv`) for every arm of
the study (`experiments/configs/animal_mnist.py`), writes `OUT/results.json`
(per-arm mean ± std over seeds, per-epoch curves, per-class accuracies),
`OUT/results.md` (the tables) and, with `--results-dir`, the same JSON
(`ablation_ir{IR}.json`) plus `per_class_ce_vs_balbce{suffix}.png` and
`accuracy_per_epoch{suffix}.png`. Training: `python -m livt_jax.experiments.study
--study ablation:IR`; the runs are read through `experiments/study_folder.py`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from livt_jax import console, report
from livt_jax.experiments import study_folder as folder
from livt_jax.experiments.configs import animal_mnist as study_config
from livt_jax.experiments.configs.animal_mnist import LOSS_LABELS, Arm
from livt_jax.experiments.definition import get_study
from livt_jax.experiments.stats import mean_std
from livt_jax.experiments.study import parse_seeds

METRICS = ("top1", "many", "medium", "few")
# The loss comparison, which the convergence table and the curves plot.
LOSS_ARMS = tuple(study_config.arm_list({"loss": study_config.get_hyper("ablation")["loss"]}))


def aggregate_arm(summaries: Sequence[Mapping[str, Any]]) -> dict:
    """Mean ± std over seeds of final and best-epoch metrics, and the mean per-epoch curve."""
    out: dict[str, Any] = {"seeds": [s.get("seed") for s in summaries]}
    for which in ("final", "best"):
        out[which] = {}
        for m in METRICS + ("top5", "ece"):
            mean, std, n = mean_std([s[which].get(m) for s in summaries])
            if n:
                out[which][m] = {"mean": mean, "std": std, "n": n}
        mean, std, n = mean_std([s[which].get("epoch") for s in summaries])
        out[which]["epoch"] = {"mean": mean, "std": std, "n": n}
    # per-epoch test top-1, averaged over the seeds that have that epoch
    by_epoch: dict[float, list[float]] = {}
    for s in summaries:
        for record in s.get("history", []):
            by_epoch.setdefault(round(float(record["epoch"]), 4), []).append(record["top1"])
    epochs = sorted(by_epoch)
    out["curve"] = {"epoch": epochs, "top1": [float(np.mean(by_epoch[e])) for e in epochs],
                    "top1_std": [mean_std(by_epoch[e])[1] for e in epochs]}
    out["wall_s"] = mean_std([s.get("wall_s") for s in summaries])[0]
    return out


def read_per_class(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train counts, accuracies %, names) from a final_per_class.csv."""
    counts, accs, names = [], [], []
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            counts.append(int(row["train_count"]))
            accs.append(float(row["accuracy"]))
            names.append(row["name"])
    return np.asarray(counts), np.asarray(accs), names


def collect(out: str, seeds: Sequence[int], arms: Sequence[Arm]) -> dict:
    """Reads every finished run under `out` and aggregates it per arm."""
    results: dict[str, Any] = {"arms": {}, "mgp": {}, "missing": []}
    mgp = [s for s in (folder.read_summary(folder.run_dir(out, seed, folder.MGP))
                       for seed in seeds) if s]
    results["mgp"] = {"n": len(mgp), "final_loss": mean_std([s.get("final_loss") for s in mgp]),
                      "wall_s": mean_std([s.get("wall_s") for s in mgp])[0]}
    for arm in arms:
        summaries, per_class = [], []
        for seed in seeds:
            workdir = folder.run_dir(out, seed, arm.name)
            summary = folder.read_summary(workdir)
            if summary is None:
                results["missing"].append(workdir)
                continue
            summaries.append(summary)
            csv_path = os.path.join(workdir, "final_per_class.csv")
            if os.path.exists(csv_path):
                per_class.append(read_per_class(csv_path))
        if not summaries:
            continue
        agg = aggregate_arm(summaries)
        if per_class:
            agg["per_class"] = {"train_count": per_class[0][0].tolist(),
                                "name": per_class[0][2],
                                "accuracy": np.mean([p[1] for p in per_class], 0).tolist()}
        results["arms"][arm.name] = agg
    return results


def convergence(curve: Mapping[str, Sequence[float]], target: float) -> Optional[float]:
    """First epoch whose mean top-1 reaches `target` (None if never)."""
    for epoch, top1 in zip(curve["epoch"], curve["top1"]):
        if top1 >= target:
            return epoch
    return None


# ----------------------------------------------------------------------------- tables, plots

def cell(stat: Optional[Mapping[str, float]]) -> str:
    if not stat or not np.isfinite(stat["mean"]):
        return "–"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def format_table(results: Mapping[str, Any], arms: Sequence[Arm], which: str) -> str:
    """Markdown table: one row per arm, overall / many / medium / few as mean ± std."""
    header = ["loss", "init", "sampler", "seeds", "overall", "many", "medium", "few"]
    if which == "best":
        header.append("best epoch")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in arms:
        agg = results["arms"].get(arm.name)
        if agg is None:
            continue
        stats = agg[which]
        row = [LOSS_LABELS.get(arm.loss, arm.loss), arm.init, arm.sampler.replace("_", "-"),
               str(len(agg["seeds"]))] + [cell(stats.get(m)) for m in METRICS]
        if which == "best":
            row.append(cell(stats.get("epoch")))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def format_convergence(results: Mapping[str, Any], fractions=(0.9, 0.95)) -> str:
    """Per loss: mean top-1 at a few epochs, the first epoch reaching a share of the
    best final mean top-1 among the losses and of the loss's own final top-1, and
    the mean of the curve (area under it / epochs)."""
    arms = [a for a in LOSS_ARMS if a.name in results["arms"]]
    if not arms:
        return ""
    curves = {a.name: results["arms"][a.name]["curve"] for a in arms}
    best_final = max(results["arms"][a.name]["final"]["top1"]["mean"] for a in arms)
    n_epochs = len(curves[arms[0].name]["epoch"])
    marks = sorted({max(1, n_epochs // 6), max(1, n_epochs // 3), max(1, n_epochs // 2), n_epochs})
    header = (["loss"] + [f"top-1 @ ep {m}" for m in marks]
              + [f"first epoch ≥ {f:.0%} of {best_final:.1f}" for f in fractions]
              + [f"first epoch ≥ {fractions[0]:.0%} of own final", "mean over epochs"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a in arms:
        c = curves[a.name]
        row = [LOSS_LABELS[a.loss]] + [f"{c['top1'][m - 1]:.1f}" if m <= len(c["top1"]) else "–"
                                      for m in marks]
        own = results["arms"][a.name]["final"]["top1"]["mean"]
        for target in [f * best_final for f in fractions] + [fractions[0] * own]:
            e = convergence(c, target)
            row.append("never" if e is None else f"{e:g}")
        row.append(f"{np.mean(c['top1']):.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def format_report(results: Mapping[str, Any], arms: Sequence[Arm], title: str) -> str:
    parts = [f"# {title}", "",
             "Final epoch (test top-1 %, mean ± std over seeds):", "",
             format_table(results, arms, "final"), "",
             "Best epoch by test top-1 (reported separately, as the LiVT release reports it):", "",
             format_table(results, arms, "best"), "",
             "Convergence (mean test top-1 per epoch, loss comparison):", "",
             format_convergence(results), ""]
    mgp = results.get("mgp", {})
    if mgp.get("n"):
        loss = mgp["final_loss"]
        parts.append(f"MGP: {mgp['n']} runs, final MAE loss {loss[0]:.3f} ± {loss[1]:.3f}, "
                     f"{mgp['wall_s']:.0f} s per run.")
    if results.get("missing"):
        parts.append("Missing runs: " + ", ".join(results["missing"]))
    return "\n".join(parts) + "\n"


def plot_per_class(results: Mapping[str, Any], path: str, title: str) -> None:
    """Per-class test accuracy vs class training count (log x), CE vs Bal-BCE."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, style in ((Arm("ce"), "o-"), (Arm("bal_bce"), "s-")):
        pc = results["arms"].get(arm.name, {}).get("per_class")
        if pc is None:
            continue
        order = np.argsort(pc["train_count"])
        ax.plot(np.asarray(pc["train_count"])[order], np.asarray(pc["accuracy"])[order], style,
                ms=4, label=f"{LOSS_LABELS[arm.loss]} (MGP, instance)")
    report.accuracy_vs_count_axes(ax, "test accuracy (%), mean over seeds")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    report.save_plot(fig, path, dpi=90)


def plot_curves(results: Mapping[str, Any], path: str, title: str) -> None:
    """Mean test top-1 per epoch for every loss (MGP, instance) and Bal-BCE from scratch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    arms = [*LOSS_ARMS, Arm("bal_bce", "scratch")]
    for arm in arms:
        agg = results["arms"].get(arm.name)
        if agg is None:
            continue
        label = LOSS_LABELS[arm.loss] + (" (scratch)" if arm.init == "scratch" else "")
        ax.plot(agg["curve"]["epoch"], agg["curve"]["top1"],
                ls="--" if arm.init == "scratch" else "-", label=label)
    report.line_plot_axes(ax, "epoch", "test top-1 (%), mean over seeds", title)
    report.save_plot(fig, path, dpi=90)


def write_outputs(results: dict, out: str, imbalance_ratio: float, arms: Sequence[Arm],
                  results_dir: str = "", suffix: str = "") -> None:
    title = f"LiVT ablation, Animal-MNIST-LT IR {imbalance_ratio:g}"
    os.makedirs(out, exist_ok=True)
    folder.write_json(os.path.join(out, "results.json"), results)
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(format_report(results, arms, title))
    plot_per_class(results, os.path.join(out, "per_class_ce_vs_balbce.png"), title)
    plot_curves(results, os.path.join(out, "accuracy_per_epoch.png"), title)
    if results_dir:
        os.makedirs(results_dir, exist_ok=True)
        for name in ("per_class_ce_vs_balbce", "accuracy_per_epoch"):
            shutil.copy(os.path.join(out, f"{name}.png"),
                        os.path.join(results_dir, f"{name}{suffix}.png"))
        compact = {"imbalance_ratio": imbalance_ratio, "study_overrides": study_config.STUDY_OVERRIDES,
                   "arms": results["arms"],
                   "mgp": results["mgp"], "missing": results["missing"],
                   "timing": results.get("timing")}
        folder.write_json(os.path.join(results_dir, f"ablation_ir{imbalance_ratio:g}.json"),
                          compact)


def timing(out: str, seeds: Sequence[int], arms: Sequence[Arm]) -> dict:
    """Sum of the per-run wall times recorded in the summaries (resume-proof)."""
    walls = {"mgp": [], "bft": []}
    for seed in seeds:
        s = folder.read_summary(folder.run_dir(out, seed, folder.MGP))
        if s:
            walls["mgp"].append(s["wall_s"])
        for arm in arms:
            s = folder.read_summary(folder.run_dir(out, seed, arm.name))
            if s:
                walls["bft"].append(s["wall_s"])
    return {"mgp_runs": len(walls["mgp"]), "bft_runs": len(walls["bft"]),
            "mgp_s": sum(walls["mgp"]), "bft_s": sum(walls["bft"]),
            "runs_s": sum(walls["mgp"]) + sum(walls["bft"])}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = console.command_parser("python -m livt_jax.experiments.study_report", __doc__)
    parser.add_argument("--study", default="ablation", help="ablation[:IR] (default IR 100)")
    parser.add_argument("--seeds", default="", help="comma-separated (default: the study's)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--results-dir", default="",
                        help="also write the plots and a results JSON here (docs/results)")
    parser.add_argument("--results-suffix", default=None,
                        help="suffix of the plot names there (default: '' for IR 100, "
                             "'_ir<IR>' otherwise)")
    args = parser.parse_args(argv)
    try:
        study = get_study(args.study)
        seeds = parse_seeds(args.seeds) if args.seeds else list(study.seeds)
    except ValueError as e:
        return console.report_error(e, usage=True)
    ratio = study.base.data.imbalance_ratio
    arms = [Arm.of(overrides) for overrides in study.arms.values()]
    suffix = args.results_suffix
    if suffix is None:
        suffix = "" if ratio == 100 else f"_ir{ratio:g}"
    results = collect(args.out, seeds, arms)
    results["timing"] = timing(args.out, seeds, arms)
    write_outputs(results, args.out, ratio, arms, args.results_dir, suffix)
    print(format_report(results, arms, f"IR {ratio:g}"), flush=True)
    print(f"[study_report] timing {json.dumps(results['timing'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
