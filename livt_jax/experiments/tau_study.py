"""The fair τ study (Bal-CE vs Bal-BCE) and where the gap between the two comes from.

    python -m livt_jax.experiments.tau_study --out runs/tau_ir100 --seeds 0,1,2 \
        --head-share runs/tau_ir10 --results-dir docs/results

Runs come from `python -m livt_jax.experiments.study --study tau:IR` (`OUT/seed{S}/{arm}`,
read through `experiments/study_folder.py`). For
every run this scores the export's logits on the balanced validation set of
`validation.py` (classes 1..9) and on the test split:

- **τ selection on validation only**: per loss, the τ of the grid with the
  highest validation top-1 (mean over seeds); the test split is then read at
  that τ and at τ = 1 (the release's value), nothing else is chosen on it.
- **decision rule** (docs/DESIGN.md, "Bal-BCE and Bal-CE"): Bal-BCE's raw argmax_c z_c beside the balanced
  rule argmax_c log σ(z_c + m_c) − log π_c, m_c = τ·(log π_c − log(1 − π_c)) its
  training margin; Bal-CE is read raw (its z already is the balanced rule).
- **confusions** on the test split between the head and its neighbours
  (row-normalised confusion matrices, mean over seeds, and the top confusions).
- **head share**: the same τ = 1 comparison on a second study folder trained
  with a smaller head share (`--head-share`, e.g. IR 10).

Writes `OUT/tau_study.{json,md}` and, with `--results-dir`, `tau_ir{IR}.json`,
`tau_validation_ir{IR}.png` and `confusion_ir{IR}.png` there.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from livt_jax import console, metrics, report
from livt_jax.adjust import balanced_rule_scores
from livt_jax.experiments import study_folder as folder
from livt_jax.experiments import study_report as sr
from livt_jax.experiments.study import enable_compile_cache, parse_seeds
from livt_jax.experiments.configs import animal_mnist as study_config

LOSSES = ("bal_ce", "bal_bce")
RULES = ("raw", "balanced")  # raw argmax z; the balanced rule (Bal-BCE only)


# ----------------------------------------------------------------------------- scoring (numpy)

def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int
                     ) -> np.ndarray:
    """int64 (C, C): [true class, predicted class] counts."""
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def confusion_metrics(confusion: np.ndarray, train_counts: np.ndarray) -> dict[str, Any]:
    """top-1 (%, over images), many/medium/few (%, mean per-class accuracy of the
    group's classes that have test images) and per_class (%, NaN where untested)."""
    totals = confusion.sum(1)
    tested = totals > 0
    per_class = np.where(tested, 100.0 * np.diag(confusion) / np.maximum(totals, 1), np.nan)
    return {"top1": float(100.0 * np.trace(confusion) / totals.sum()),
            "per_class": per_class.tolist(),
            **metrics.group_accuracies(per_class, tested, train_counts)}


def select_tau(val_top1: Mapping[float, Sequence[float]]) -> float:
    """The τ with the highest mean validation top-1 (ties: the first in the mapping's order)."""
    if not val_top1:
        raise ValueError("select_tau needs at least one τ with validation scores")
    means = {tau: float(np.mean(v)) for tau, v in val_top1.items()}
    return max(means, key=lambda tau: means[tau])


def top_confusions(confusion_pct: np.ndarray, k: int = 5) -> list[tuple[int, int, float]]:
    """The k largest off-diagonal entries (true, predicted, % of the true class)."""
    off = np.nan_to_num(np.array(confusion_pct, np.float64), nan=-np.inf)
    np.fill_diagonal(off, -np.inf)
    order = np.argsort(off, axis=None)[::-1][:k]
    return [(int(i // off.shape[1]), int(i % off.shape[1]), float(off.flat[i])) for i in order]


# ----------------------------------------------------------------------------- logits of a run

def export_logits(config, export: str, source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (N, C), labels (N,), train counts (C,)) of a BFT export on `source`."""
    from livt_jax import mesh as mesh_lib
    from livt_jax.evaluator import Evaluator
    evaluator = Evaluator.for_config(
        config, mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp), source)
    logits, labels = evaluator.logits_and_labels(evaluator.load_export(export))
    return logits, labels, evaluator.train_counts


def score_run(config, summary: Mapping[str, Any], sources: Mapping[str, Any]) -> dict:
    """{split: {rule: {'confusion': (C, C) list, **confusion_metrics}}} for one run."""
    loss, tau = config.finetune.loss, float(config.finetune.tau)
    out: dict[str, Any] = {}
    for split, source in sources.items():
        logits, labels, counts = export_logits(config, summary["export"], source)
        rules = {"raw": logits}
        if loss == "bal_bce":
            rules["balanced"] = balanced_rule_scores(logits, counts, tau)
        out[split] = {}
        for rule, scores in rules.items():
            conf = confusion_matrix(labels, scores.argmax(1), len(counts))
            out[split][rule] = {"confusion": conf.tolist(), **confusion_metrics(conf, counts)}
    out["train_counts"] = counts.tolist()
    return out


def score_study(out: str, seeds: Sequence[int], arms: Sequence[study_config.Arm],
                splits: Sequence[str] = ("val", "test")) -> dict[str, dict[int, dict]]:
    """arm name -> seed -> score_run(...) for every finished run (cached in OUT/scores.json)."""
    import ml_collections

    from livt_jax.config_lib import stage_data_config
    from livt_jax.data import pipeline
    from livt_jax.experiments import validation
    cache_path = os.path.join(out, "scores.json")
    cache = folder.read_json(cache_path) or {}
    sources = None
    scores: dict[str, dict[int, dict]] = {}
    for arm in arms:
        for seed in seeds:
            summary = folder.read_summary(folder.run_dir(out, seed, arm.name))
            if summary is None:
                continue
            key = f"{arm.name}/seed{seed}"
            if key not in cache:
                config = ml_collections.ConfigDict(summary["config"])
                if sources is None:
                    test = pipeline.load_sources(stage_data_config(config, "finetune").data).test
                    sources = {"val": validation.validation_source(config), "test": test}
                cache[key] = score_run(config, summary, {s: sources[s] for s in splits})
                cache[key]["test_final_logged"] = summary["final"]
                cache[key]["imbalance_ratio"] = float(config.data.imbalance_ratio)
                folder.write_json(cache_path, cache)
                print(f"[tau_study] scored {key}", flush=True)
            scores.setdefault(arm.name, {})[seed] = cache[key]
    return scores


# ----------------------------------------------------------------------------- analysis

# The rows of the tables: (label, loss, rule).
ROWS = (("Bal-CE", "bal_ce", "raw"), ("Bal-BCE", "bal_bce", "raw"),
        ("Bal-BCE, balanced rule", "bal_bce", "balanced"))
GROUP_METRICS = ("top1", "many", "medium", "few")


def _runs(scores, loss: str, tau: float) -> dict[int, dict]:
    return scores.get(study_config.Arm(loss, tau=tau).name, {})


def _stats(runs: Mapping[int, dict], split: str, rule: str) -> dict[str, dict]:
    out = {}
    for m in GROUP_METRICS:
        mean, std, n = sr.mean_std([r[split][rule].get(m) for r in runs.values()])
        if n:
            out[m] = {"mean": mean, "std": std, "n": n}
    return out


def mean_confusion_pct(runs: Mapping[int, dict], split: str, rule: str) -> np.ndarray:
    """Row-normalised confusion (% of each true class), averaged over seeds."""
    mats = []
    for r in runs.values():
        conf = np.asarray(r[split][rule]["confusion"], np.float64)
        mats.append(100.0 * conf / np.maximum(conf.sum(1, keepdims=True), 1))
    return np.mean(mats, 0)


def analyse(scores: Mapping[str, Mapping[int, dict]], grid: Sequence[float]) -> dict:
    """The τ tables (validation per τ, the validation-chosen τ, τ = 1) and confusions."""
    result: dict[str, Any] = {"grid": list(grid), "sweep": {}, "chosen": {}, "confusion": {}}
    for label, loss, rule in ROWS:
        sweep = {}
        for tau in grid:
            runs = _runs(scores, loss, tau)
            if runs:
                sweep[tau] = {"val": _stats(runs, "val", rule), "test": _stats(runs, "test", rule),
                              "val_top1": {s: r["val"][rule]["top1"] for s, r in runs.items()}}
        if not sweep:
            continue
        # τ is chosen on the seeds every τ of the grid has, so each τ is judged alike
        common = sorted(set.intersection(*(set(s["val_top1"]) for s in sweep.values())))
        best = select_tau({tau: [s["val_top1"][seed] for seed in common]
                           for tau, s in sweep.items()})
        result["sweep"][label] = {f"{tau:g}": s for tau, s in sweep.items()}
        result["chosen"][label] = {"tau": best, "selection_seeds": common,
                                   "at_chosen": sweep[best], "at_1": sweep.get(1.0)}
        runs = _runs(scores, loss, 1.0)
        if runs:
            pct = mean_confusion_pct(runs, "test", rule)
            result["confusion"][label] = {"tau": 1.0, "matrix_pct": pct.tolist(),
                                          "top": top_confusions(pct)}
    any_run = next(r for runs in scores.values() for r in runs.values())
    result["train_counts"] = any_run["train_counts"]
    return result


def head_share_row(scores: Mapping[str, Mapping[int, dict]],
                   seeds: Optional[Sequence[int]] = None) -> dict:
    """τ = 1 test top-1 of each row (over `seeds`, default all), and the head's share of
    the training set."""
    if seeds is not None:
        scores = {arm: {s: r for s, r in runs.items() if s in seeds}
                  for arm, runs in scores.items()}
    counts = np.asarray(next(r for runs in scores.values()
                             for r in runs.values())["train_counts"], np.float64)
    row: dict[str, Any] = {"head_share": float(counts.max() / counts.sum()),
                           "train_counts": counts.astype(int).tolist()}
    for label, loss, rule in ROWS:
        runs = _runs(scores, loss, 1.0)
        if runs:
            row[label] = _stats(runs, "test", rule)
            row[label]["seeds"] = sorted(runs)
    return row


# ----------------------------------------------------------------------------- tables, plots

def format_tables(result: Mapping[str, Any], head_share: Mapping[str, dict]) -> str:
    grid = result["grid"]
    def with_n(stat):
        return f"{sr.cell(stat)} ({stat['n']})" if stat else "–"

    lines = ["Validation top-1 (%) per τ (classes 1-9, mean ± std (seeds)):", "",
             "| | " + " | ".join(f"τ = {t:g}" for t in grid) + " | chosen τ |",
             "|---|" + "---|" * (len(grid) + 1)]
    for label, sweep in result["sweep"].items():
        cells = [with_n(sweep.get(f"{t:g}", {}).get("val", {}).get("top1")) for t in grid]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {result['chosen'][label]['tau']:g} |")
    lines += ["", "Test split (%), read once at the validation-chosen τ and at τ = 1:", "",
              "| | τ | seeds | test overall | many | medium | few |",
              "|---|---|---|---|---|---|---|"]
    for label, chosen in result["chosen"].items():
        for name, tau in (("at_chosen", chosen["tau"]), ("at_1", 1.0)):
            stats = chosen[name]
            if stats is None or (name == "at_1" and chosen["tau"] == 1.0):
                continue
            lines.append(f"| {label} | {tau:g} | {stats['test']['top1']['n']} | " + " | ".join(
                sr.cell(stats["test"].get(m)) for m in GROUP_METRICS) + " |")
    counts = result["train_counts"]
    lines += ["", "Test accuracy per class at τ = 1 (%, mean over seeds), and the share of "
              "the class's test images predicted as the head (class 0):", "",
              "| class (train n) | " + " | ".join(
                  f"{label} acc | {label} → 0" for label in result["confusion"]) + " |",
              "|---|" + "---|---|" * len(result["confusion"])]
    mats = {label: np.asarray(c["matrix_pct"]) for label, c in result["confusion"].items()}
    for c, n in enumerate(counts):
        cells = [f"{m[c, c]:.1f} | {m[c, 0]:.1f}" if c else f"{m[c, c]:.1f} | –"
                 for m in mats.values()]
        lines.append(f"| {c} ({n}) | " + " | ".join(cells) + " |")
    lines += ["", "Largest confusions at τ = 1 (true → predicted, % of the true class):", ""]
    for label, c in result["confusion"].items():
        lines.append(f"- {label}: " + ", ".join(f"{t} → {p} ({v:.1f})" for t, p, v in c["top"]))
    lines += ["", "Head share (τ = 1, test overall %):", "",
              "| training set | head share | " + " | ".join(label for label, _, _ in ROWS)
              + " | Bal-CE − Bal-BCE | Bal-CE − Bal-BCE (balanced rule) |",
              "|---|---|" + "---|" * (len(ROWS) + 2)]
    for name, row in head_share.items():
        top = {label: row.get(label, {}).get("top1") for label, _, _ in ROWS}
        gaps = [top["Bal-CE"]["mean"] - top[k]["mean"] if top["Bal-CE"] and top[k] else np.nan
                for k in ("Bal-BCE", "Bal-BCE, balanced rule")]
        lines.append(f"| {name} | {100 * row['head_share']:.1f}% | "
                     + " | ".join(sr.cell(top[label]) for label, _, _ in ROWS) + " | "
                     + " | ".join(f"{g:+.1f}" for g in gaps) + " |")
    return "\n".join(lines) + "\n"


def plot_validation(result: Mapping[str, Any], path: str, title: str) -> None:
    """Validation top-1 against τ, one line per row (mean ± std over seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for (label, sweep), style in zip(result["sweep"].items(), ("o-", "s-", "^--")):
        taus = sorted(float(t) for t in sweep)
        stats = [sweep[f"{t:g}"]["val"]["top1"] for t in taus]
        ax.errorbar(taus, [s["mean"] for s in stats], yerr=[s["std"] for s in stats],
                    fmt=style, ms=4, capsize=3, label=label)
    report.line_plot_axes(ax, "τ", "validation top-1 (%), classes 1-9", title)
    report.save_plot(fig, path, dpi=90)


def plot_confusions(result: Mapping[str, Any], path: str, title: str) -> None:
    """Row-normalised test confusion matrices at τ = 1, one panel per row."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = result["confusion"]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6))
    for ax, (label, c) in zip(np.atleast_1d(axes), panels.items()):
        m = np.asarray(c["matrix_pct"])
        ax.imshow(m, cmap="Blues", vmin=0, vmax=100)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j] >= 5:
                    ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > 50 else "black")
        ax.set_xticks(range(m.shape[1]))
        ax.set_yticks(range(m.shape[0]))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class (0 = head)")
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    report.save_plot(fig, path, dpi=90)


def _imbalance_ratio(scores: Mapping[str, Mapping[int, dict]]) -> float:
    return next(r for runs in scores.values() for r in runs.values())["imbalance_ratio"]


def study_time(out: str, seeds: Sequence[int], arms: Sequence[study_config.Arm]) -> dict:
    """Summed per-run wall time of a study folder (MGP and BFT)."""
    return sr.timing(out, seeds, arms)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = console.command_parser("python -m livt_jax.experiments.tau_study", __doc__)
    parser.add_argument("--out", required=True, help="the τ study folder")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--head-share", default="",
                        help="comma-separated study folders with another head share (τ = 1 arms)")
    parser.add_argument("--results-dir", default="")
    args = parser.parse_args(argv)
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    seeds = parse_seeds(args.seeds)
    enable_compile_cache(os.path.join(args.out, ".jax_cache"))
    arms = study_config.arm_list(study_config.get_hyper("tau"))
    scores = score_study(args.out, seeds, arms)
    if not scores:
        print(f"[tau_study] no finished runs under {args.out}", file=sys.stderr)
        return 1
    result = analyse(scores, sorted(study_config.TAU_GRID))
    folders = {args.out: (_imbalance_ratio(scores), scores)}
    for other_out in filter(None, args.head_share.split(",")):
        other = score_study(other_out, seeds, arms[:2], splits=("test",))
        if other:
            folders[other_out] = (_imbalance_ratio(other), other)
    ir = folders[args.out][0]
    result["head_share"] = {f"IR {r:g}": head_share_row(s) for r, s in folders.values()}
    for _, other in list(folders.values())[1:]:  # the main study on the other folder's seeds
        other_seeds = sorted({seed for runs in other.values() for seed in runs})
        result["head_share"][f"IR {ir:g}, seeds {other_seeds}"] = head_share_row(
            scores, other_seeds)
    result["timing"] = {f"IR {r:g}": study_time(f, seeds, arms) for f, (r, _) in folders.items()}
    text = format_tables(result, result["head_share"])
    folder.write_json(os.path.join(args.out, "tau_study.json"), result)
    with open(os.path.join(args.out, "tau_study.md"), "w", encoding="utf-8") as f:
        f.write(text)
    title = f"Animal-MNIST-LT IR {ir:g}, τ study"
    plot_validation(result, os.path.join(args.out, "tau_validation.png"), title)
    plot_confusions(result, os.path.join(args.out, "confusion.png"), title + " (test, τ = 1)")
    if args.results_dir:
        import shutil
        os.makedirs(args.results_dir, exist_ok=True)
        folder.write_json(os.path.join(args.results_dir, f"tau_ir{ir:g}.json"), result)
        for name in ("tau_validation", "confusion"):
            shutil.copy(os.path.join(args.out, f"{name}.png"),
                        os.path.join(args.results_dir, f"{name}_ir{ir:g}.png"))
    print(text, flush=True)
    print(f"[tau_study] timing {result['timing']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
