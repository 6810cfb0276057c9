"""Tables, intervals and the convergence plot of the CIFAR-10-LT study, from its records.

    python -m livt_jax.experiments.study_render --results docs/results/cifar10_lt \\
        --markdown docs/RESULTS.md [--plot docs/results/cifar10_lt_convergence.png]

Reads only the records the study wrote (`seed{S}_{arm}.json`, `seed{S}_mgp.json`,
`tune_*.json`, `choice.json`; `experiments/study_folder.py`), so every number can
be recomputed from the repository. Rewrites the part of the markdown file between
`<!-- cifar10_lt:begin -->` and `<!-- cifar10_lt:end -->` (or prints it).
Each arm is reported by its model selected on validation ("selected") and by its
final epoch; the claims compare selected models, paired by seed.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import numpy as np

from livt_jax import console, report
from livt_jax.experiments import stats
from livt_jax.experiments import study_folder as folder
from livt_jax.experiments.configs import cifar10_lt as study

BEGIN, END = "<!-- cifar10_lt:begin -->", "<!-- cifar10_lt:end -->"
COLUMNS = ("top1", "many", "medium", "few")


def cell(values: Sequence[Optional[float]]) -> str:
    mean, std, n = stats.mean_std(values)
    return "–" if n == 0 else f"{mean:.2f} ± {std:.2f}"


def arm_table(records: dict, which: str) -> str:
    """Markdown: one row per arm, mean ± std over seeds of the test metrics."""
    lines = ["| arm | seeds | overall | many | medium | few | epoch |",
             "|---|---|---|---|---|---|---|"]
    for arm, label in study.ARM_LABELS.items():
        runs = [r[f"test_{which}"] for r in records.get(arm, {}).values() if f"test_{which}" in r]
        if not runs:
            continue
        cells = " | ".join(cell([r.get(m) for r in runs]) for m in COLUMNS)
        epochs = ", ".join(f"{r['epoch']:g}" for r in runs)
        lines.append(f"| {label} | {len(runs)} | {cells} | {epochs} |")
    return "\n".join(lines)


def claims(records: dict, metric: str = "top1") -> list[dict]:
    """Per claim: the paired per-seed difference of the selected models' `metric`."""
    out = []
    for name, a, b in study.CLAIMS:
        seeds = sorted(set(records.get(a, {})) & set(records.get(b, {})))
        seeds = [s for s in seeds if metric in records[a][s].get("test_best", {})
                 and metric in records[b][s].get("test_best", {})]
        diff = stats.paired_difference([records[a][s]["test_best"][metric] for s in seeds],
                                       [records[b][s]["test_best"][metric] for s in seeds])
        out.append({"claim": name, "a": a, "b": b, "metric": metric, "seeds": seeds, **diff,
                    "verdict": stats.verdict(diff, study.ARM_LABELS[a], study.ARM_LABELS[b])})
    return out


def claims_table(rows: list[dict]) -> str:
    lines = ["| claim | metric | seeds | per-seed A − B | mean | 95% CI | p (paired t) | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        diffs = ", ".join(f"{d:+.2f}" for d in r["diffs"])
        ci = "–" if not np.isfinite(r["low"]) else f"[{r['low']:+.2f}, {r['high']:+.2f}]"
        p = "–" if not np.isfinite(r["p"]) else f"{r['p']:.3f}"
        lines.append(f"| {r['claim']} | {r['metric']} | {len(r['seeds'])} | {diffs} | "
                     f"{r['mean']:+.2f} | {ci} | {p} | {r['verdict']} |")
    return "\n".join(lines)


def val_at_epoch(record: dict, epoch: float) -> Optional[float]:
    """Validation top-1 of the evaluation at `epoch` (None if the run has none)."""
    for h in record["val_history"]:
        if abs(h["epoch"] - epoch) < 1e-6:
            return h["top1"]
    return None


def convergence(records: dict) -> dict[str, dict[float, list[float]]]:
    """arm -> epoch -> the seeds' validation top-1 after that BFT epoch."""
    out = {}
    for arm in study.CONVERGENCE_ARMS:
        runs = records.get(arm, {}).values()
        out[arm] = {e: [v for v in (val_at_epoch(r, e) for r in runs) if v is not None]
                    for e in study.CONVERGENCE_EPOCHS}
    return out


def convergence_table(curves: dict) -> str:
    epochs = study.CONVERGENCE_EPOCHS
    lines = ["| arm | " + " | ".join(f"epoch {e:g}" for e in epochs) + " |",
             "|---|" + "---|" * len(epochs)]
    for arm, by_epoch in curves.items():
        lines.append(f"| {study.ARM_LABELS[arm]} | "
                     + " | ".join(cell(by_epoch[e]) for e in epochs) + " |")
    return "\n".join(lines)


def plot_convergence(records: dict, path: str) -> None:
    """Mean validation top-1 per BFT epoch (± std over seeds) for the convergence arms."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm in study.CONVERGENCE_ARMS:
        runs = list(records.get(arm, {}).values())
        if not runs:
            continue
        epochs = [h["epoch"] for h in runs[0]["val_history"]]
        curves = np.array([[val_at_epoch(r, e) for e in epochs] for r in runs], float)
        mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
        ax.plot(epochs, mean, marker="o", label=study.ARM_LABELS[arm])
        ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
    report.line_plot_axes(ax, "BFT epoch", "validation top-1 (%)",
                          f"CIFAR-10-LT IR 100: validation top-1 per epoch ({len(runs)} seeds)")
    report.save_plot(fig, path, dpi=120)


def wall_time(results: str, records: dict) -> dict[str, float]:
    """Summed wall seconds of MGP, tuning and BFT runs."""
    tune = [r["wall_s"] for r in folder.read_tune_records(results).values()]
    mgp = [r["wall_s"] for r in records.get("mgp", {}).values()]
    bft = [r["wall_s"] for arm, by_seed in records.items() if arm != "mgp"
           for r in by_seed.values()]
    return {"mgp": sum(mgp), "tune": sum(tune), "bft": sum(bft),
            "total": sum(mgp) + sum(tune) + sum(bft)}


def render(results: str, plot: str = "") -> str:
    """The markdown section (without the markers)."""
    records = folder.read_records(results)
    choice = folder.read_choice(results)
    if choice is None:
        raise FileNotFoundError(f"no {folder.CHOICE} in {results}: the study's tuning is unfinished")
    seeds = sorted({s for arm in study.ARMS for s in records.get(arm, {})})
    wall = wall_time(results, records)
    grid = ", ".join(f"{v} → {s:.2f}" for v, s in choice["validation_top1"].items())
    rows = claims(records)
    parts = [
        f"Seeds: {', '.join(map(str, seeds))}. Records: `docs/results/cifar10_lt/` (one JSON per run: "
        "per-class test accuracy, the validation history, the settings, the wall time). "
        "Rendered by `python -m livt_jax.experiments.study_render`.",
        f"Tuning (seed {study.TUNING.seed}, LiVT arm, validation only): `{choice['key']}` "
        f"{grid} (validation top-1 of the best epoch) → **{choice['value']:g}** for every arm.",
        "### Test accuracy of the model selected on validation (mean ± std over seeds)",
        arm_table(records, "best"),
        "### Test accuracy of the final epoch",
        arm_table(records, "final"),
        "### The claims, paired by seed (selected models, overall top-1)",
        claims_table(rows),
        "### Medium-shot classes (the two tail classes, 83 and 50 training images)",
        claims_table(claims(records, "medium")),
        "### Convergence: validation top-1 after BFT epoch 1, 2, 5, 10 (mean ± std)",
        convergence_table(convergence(records)),
        f"Wall time (measured, the shared 2-core CPU): MGP {wall['mgp'] / 60:.0f} min, "
        f"tuning {wall['tune'] / 60:.0f} min, BFT {wall['bft'] / 60:.0f} min, "
        f"total {wall['total'] / 60:.0f} min.",
    ]
    if plot:
        plot_convergence(records, plot)
        parts.append(f"![validation top-1 per epoch]({os.path.relpath(plot, 'docs')})")
    return "\n\n".join(parts)


def replace_section(markdown: str, section: str) -> str:
    """`markdown` with the text between BEGIN and END replaced by `section`."""
    if BEGIN not in markdown or END not in markdown:
        raise ValueError(f"the markdown file has no {BEGIN} ... {END} section")
    head, rest = markdown.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{section}\n{END}{tail}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = console.command_parser("python -m livt_jax.experiments.study_render", __doc__)
    parser.add_argument("--results", required=True, help="the study's records folder")
    parser.add_argument("--markdown", default="", help="file whose marked section is rewritten")
    parser.add_argument("--plot", default="", help="where to write the convergence plot (PNG)")
    args = parser.parse_args(argv)
    section = render(args.results, args.plot)
    if not args.markdown:
        print(section)
        return 0
    with open(args.markdown, encoding="utf-8") as f:
        text = replace_section(f.read(), section)
    with open(args.markdown, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
