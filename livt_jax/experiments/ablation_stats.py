"""95% intervals for the Animal-MNIST-LT comparisons, from the stored results only.

    python -m livt_jax.experiments.ablation_stats [--results-dir docs/results]

prints the markdown tables that docs/RESULTS.md quotes. What the stored files
hold decides the test (every difference is A − B in accuracy points):

- test, paired by seed: Bal-CE vs Bal-BCE (MGP, instance sampling) at IR 100.
  `investigate_ir100.json` keeps their per-seed test results for seeds 0 and 1;
  seed 2 is completed from `ablation_ir100.json`'s mean (3·mean − x0 − x1) and
  checked against its stored std (`stats.missing_value`).
- test, Welch (unpaired) from mean, std and n: every other test comparison.
  `ablation_ir{100,10}.json` and `tau_ir100.json` keep no per-seed test values,
  so the pairing by seed (shared MGP model) cannot be used; Welch ignores it.
- validation, paired by seed: `validation_ir100.json` (7 arms × 3 seeds),
  `tau_ir100.json` (validation top-1 per seed and τ), `investigate_ir100.json`
  (seeds 0 and 1: with 2 seeds the t quantile is 12.7).
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from livt_jax import console
from livt_jax.experiments import stats
from livt_jax.experiments import study_folder as folder

LABELS = {
    "ce-mgp-instance": "CE", "bce-mgp-instance": "BCE", "bal_ce-mgp-instance": "Bal-CE",
    "bal_bce-mgp-instance": "Bal-BCE", "bal_bce-scratch-instance": "Bal-BCE scratch",
    "ce-mgp-class_balanced": "CE + class-balanced",
    "bal_bce-mgp-class_balanced": "Bal-BCE + class-balanced",
    "bal_ce-ep60": "Bal-CE 60 ep", "bal_bce-ep60": "Bal-BCE 60 ep",
    "bal_ce-mildaug": "Bal-CE mild aug", "bal_bce-mildaug": "Bal-BCE mild aug",
    "bal_bce-blr6e-3": "Bal-BCE blr 6e-3",
}
# (A, B, metrics): the study's claims, A − B; metrics absent from a file are skipped.
CLAIMS = (
    ("bal_ce-mgp-instance", "bal_bce-mgp-instance", ("top1", "many", "medium", "few")),
    ("bal_bce-mgp-instance", "ce-mgp-instance", ("top1", "medium", "few")),
    ("bal_ce-mgp-instance", "ce-mgp-instance", ("top1", "medium", "few")),
    ("bce-mgp-instance", "ce-mgp-instance", ("top1",)),
    ("bal_bce-mgp-instance", "bal_bce-scratch-instance", ("top1", "many", "medium", "few")),
    ("ce-mgp-class_balanced", "bal_ce-mgp-instance", ("top1", "few")),
)
PAIRED_TEST = ("bal_ce-mgp-instance", "bal_bce-mgp-instance")
SEEDS = ("0", "1", "2")
TAUS = ("0.5", "0.75", "1", "1.25", "1.5")
RULE = "Bal-BCE, balanced rule"


def load(results_dir: str, name: str) -> dict:
    """A stored results JSON; a missing file is an OSError."""
    data = folder.read_json(os.path.join(results_dir, name))
    if data is None:
        raise FileNotFoundError(f"no {name} in {results_dir}")
    return data


def summary(stat: dict) -> tuple[float, float, int]:
    return stat["mean"], stat["std"], stat["n"]


def row(section: str, a: str, b: str, metric: str, evidence: str, diff: dict) -> dict:
    return {"section": section, "a": a, "b": b, "metric": metric, "evidence": evidence, **diff,
            "verdict": stats.verdict(diff, a, b)}


def paired_test_values(results_dir: str, arm: str, metric: str) -> list[float]:
    """Per-seed (0, 1, 2) final-epoch test `metric` of a study arm at IR 100."""
    known = [load(results_dir, "investigate_ir100.json")["per_seed"][arm][s]["test_final"][metric]
             for s in SEEDS[:2]]
    stored = load(results_dir, "ablation_ir100.json")["arms"][arm]["final"][metric]
    return known + [stats.missing_value(stored["mean"], stored["std"], known)]


def ablation_rows(results_dir: str) -> list[dict]:
    """The claims on test (IR 100 and IR 10) and on validation (IR 100)."""
    rows = []
    val = load(results_dir, "validation_ir100.json")["per_seed"]
    for ir in ("100", "10"):
        arms = load(results_dir, f"ablation_ir{ir}.json")["arms"]
        for a, b, metrics in CLAIMS:
            for m in (m for m in metrics if m in arms[a]["final"]):
                section = f"IR {ir}"
                if ir == "100" and (a, b) == PAIRED_TEST:
                    diff = stats.paired_difference(paired_test_values(results_dir, a, m),
                                                   paired_test_values(results_dir, b, m))
                    rows.append(row(section, LABELS[a], LABELS[b], m, "test, paired", diff))
                diff = stats.welch_difference(summary(arms[a]["final"][m]),
                                              summary(arms[b]["final"][m]))
                rows.append(row(section, LABELS[a], LABELS[b], m, "test, Welch", diff))
                if ir == "100":
                    diff = stats.paired_difference([val[a][s][m] for s in SEEDS],
                                                   [val[b][s][m] for s in SEEDS])
                    rows.append(row(section, LABELS[a], LABELS[b], m, "validation, paired", diff))
    return rows


def convergence_rows(results_dir: str, epochs: Sequence[int] = (5, 10)) -> list[dict]:
    """Bal-BCE against Bal-CE and CE early in fine-tuning (IR 100): test top-1 at
    `epochs`, Welch from the stored per-epoch mean and std over the arms' seeds."""
    arms = load(results_dir, "ablation_ir100.json")["arms"]

    def at(arm: str, epoch: int) -> tuple[float, float, int]:
        curve = arms[arm]["curve"]
        i = curve["epoch"].index(float(epoch))
        return curve["top1"][i], curve["top1_std"][i], len(arms[arm]["seeds"])

    return [row("IR 100, during fine-tuning", LABELS["bal_bce-mgp-instance"], LABELS[b],
                f"top1 @ ep {e}", "test, Welch",
                stats.welch_difference(at("bal_bce-mgp-instance", e), at(b, e)))
            for e in epochs for b in ("bal_ce-mgp-instance", "ce-mgp-instance")]


def tau_rows(results_dir: str) -> list[dict]:
    """τ study: the two losses per τ and each loss's τ sensitivity (validation top-1,
    paired), the balanced rule and the head-share runs (test, Welch)."""
    tau = load(results_dir, "tau_ir100.json")
    sweep = tau["sweep"]

    def val(loss: str, t: str) -> list[float]:
        return [sweep[loss][t]["val_top1"][s] for s in SEEDS]

    rows = [row("τ study", f"Bal-CE τ={t}", f"Bal-BCE τ={t}", "top1", "validation, paired",
                stats.paired_difference(val("Bal-CE", t), val("Bal-BCE", t))) for t in TAUS]
    rows.append(row("τ study", RULE, "Bal-BCE", "top1", "validation, paired",
                    stats.paired_difference(val(RULE, "1"), val("Bal-BCE", "1"))))
    for loss in ("Bal-CE", "Bal-BCE"):
        for t in ("0.75", "1.25"):
            rows.append(row("τ study", f"{loss} τ=1", f"{loss} τ={t}", "top1",
                            "validation, paired",
                            stats.paired_difference(val(loss, "1"), val(loss, t))))
    chosen = {loss: tau["chosen"][loss]["at_chosen"]["test"] for loss in tau["chosen"]}
    for a, b, metrics in ((RULE, "Bal-BCE", ("top1", "many", "medium", "few")),
                          ("Bal-CE", RULE, ("top1",))):
        for m in metrics:
            rows.append(row("τ study", a, b, m, "test, Welch", stats.welch_difference(
                summary(chosen[a][m]), summary(chosen[b][m]))))
    share = tau["head_share"]["IR 10"]
    for b in ("Bal-BCE", RULE):
        rows.append(row("head share IR 10", "Bal-CE", b, "top1", "test, Welch",
                        stats.welch_difference(summary(share["Bal-CE"]["top1"]),
                                               summary(share[b]["top1"]))))
    return rows


def investigate_rows(results_dir: str) -> list[dict]:
    """Follow-ups (seeds 0 and 1, paired): Bal-CE vs Bal-BCE per variant, and what
    each variant adds to its loss's study run."""
    per_seed = load(results_dir, "investigate_ir100.json")["per_seed"]
    study = {"bal_ce": "bal_ce-mgp-instance", "bal_bce": "bal_bce-mgp-instance"}
    pairs = [("bal_ce-ep60", "bal_bce-ep60"), ("bal_ce-mildaug", "bal_bce-mildaug"),
             ("bal_ce-mgp-instance", "bal_bce-blr6e-3"),
             ("bal_ce-ep60", study["bal_ce"]), ("bal_bce-ep60", study["bal_bce"]),
             ("bal_ce-mildaug", study["bal_ce"]), ("bal_bce-mildaug", study["bal_bce"]),
             ("bal_bce-blr6e-3", study["bal_bce"])]
    rows = []
    for a, b in pairs:
        for split, key in (("validation", "val"), ("test", "test_final")):
            diff = stats.paired_difference([per_seed[a][s][key]["top1"] for s in SEEDS[:2]],
                                           [per_seed[b][s][key]["top1"] for s in SEEDS[:2]])
            rows.append(row("follow-ups (seeds 0, 1)", LABELS[a], LABELS[b], "top1",
                            f"{split}, paired", diff))
    return rows


def markdown(rows: Sequence[dict]) -> str:
    """One table per section: A − B, evidence, n, mean, 95% CI, p, verdict."""
    out = []
    for section in dict.fromkeys(r["section"] for r in rows):
        out += [f"**{section}**", "",
                "| A − B | metric | evidence | n | per-seed A − B | mean | 95% CI | p | verdict |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["section"] == section):
            diffs = "–" if r["diffs"] is None else ", ".join(f"{d:+.1f}" for d in r["diffs"])
            out.append(f"| {r['a']} − {r['b']} | {r['metric']} | {r['evidence']} | {r['n']} | "
                       f"{diffs} | {r['mean']:+.1f} | [{r['low']:+.1f}, {r['high']:+.1f}] | "
                       f"{r['p']:.3f} | {short_verdict(r)} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def short_verdict(r: dict) -> str:
    """stats.verdict's rule in a table cell: a sign only when the interval excludes 0."""
    text = stats.verdict(r, "A", "B")
    if text.startswith("A is ahead"):
        return "A > B"
    if text.startswith("A is behind"):
        return "A < B"
    return "not shown (CI includes 0)"


def all_rows(results_dir: str) -> list[dict]:
    return (ablation_rows(results_dir) + convergence_rows(results_dir) + tau_rows(results_dir)
            + investigate_rows(results_dir))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = console.command_parser("python -m livt_jax.experiments.ablation_stats", __doc__)
    parser.add_argument("--results-dir", default="docs/results")
    args = parser.parse_args(argv)
    try:
        rows = all_rows(args.results_dir)
    except (OSError, KeyError) as e:
        print(f"error: cannot read the stored results in {args.results_dir!r}: {e!r}",
              file=sys.stderr)
        return 2
    sys.stdout.write(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
