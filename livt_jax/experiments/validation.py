"""A balanced validation set for the Animal-MNIST-LT ablation, disjoint from train and test.

The long-tailed subsampling keeps 1,982 of the 8,000 training-pool images at
IR 100; the images it drops were never seen by MGP or BFT, so `per_class` of
them per class (seeded) form a balanced validation set. The head class keeps
all of its 800 pool images, so it has none to spare and is left out (the set
covers classes 1..9; `skipped_classes` says which). The ablation's
investigations (learning rate, epochs, τ) are judged on it, never on the test
split.

    python -m livt_jax.experiments.validation --out runs/ablation_ir100 --seeds 0,1,2
        # scores every finished arm's export on the validation set -> OUT/validation.json
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from livt_jax import console
from livt_jax.data import pipeline
from livt_jax.data.sources import SubsetSource


def validation_source(config, per_class: int = 100, seed: int = 1234) -> SubsetSource:
    """`per_class` images per class from the training pool minus the LT subset; a
    class with fewer unused images is left out (listed in `.skipped_classes`)."""
    train = pipeline.load_sources(config.data).train
    if not isinstance(train, SubsetSource):
        raise ValueError("a validation set needs a long-tailed (subsampled) training set")
    pool = train.parent
    unused = np.setdiff1d(np.arange(len(pool)), train.indices)
    rng = np.random.default_rng(seed)
    picks, skipped = [], []
    for c in range(pool.num_classes):
        members = unused[pool.labels[unused] == c]
        if len(members) < per_class:
            skipped.append(c)
            continue
        picks.append(rng.choice(members, size=per_class, replace=False))
    source = SubsetSource(pool, np.sort(np.concatenate(picks)), f"validation({per_class}/class)")
    source.skipped_classes = skipped
    return source


def score_export(config, export: str, source) -> dict:
    """Scores a BFT params export on `source` (top-1, many/medium/few by train
    counts), on every process of a multi-process run (each reads its shard)."""
    from livt_jax import mesh as mesh_lib
    from livt_jax.evaluator import Evaluator, scalar_metrics

    evaluator = Evaluator.for_config(config, mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp),
                                     source)
    result = evaluator.run(evaluator.load_export(export))
    return {k: float(v) for k, v in scalar_metrics(result).items()}


def main(argv: Optional[Sequence[str]] = None) -> None:
    import ml_collections

    from livt_jax.experiments import study_folder as folder
    from livt_jax.experiments import study_report as sr
    from livt_jax.experiments.study import parse_seeds
    parser = console.command_parser("python -m livt_jax.experiments.validation", __doc__)
    parser.add_argument("--out", required=True, help="a study folder (seed*/ARM/summary.json)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--per-class", type=int, default=100)
    args = parser.parse_args(argv)
    rows = {}
    source = None
    runs = folder.list_runs(args.out)
    for seed in parse_seeds(args.seeds):
        for name in sorted(arm for arm in runs if arm != folder.MGP and seed in runs[arm]):
            summary = folder.read_summary(runs[name][seed])
            config = ml_collections.ConfigDict(summary["config"])
            if source is None:
                source = validation_source(config, args.per_class)
                print(f"validation: {len(source)} images, classes left out: "
                      f"{source.skipped_classes}", flush=True)
            rows.setdefault(name, {})[seed] = score_export(config, summary["export"], source)
            print(f"seed {seed} {name:32s} val top-1 {rows[name][seed]['top1']:.2f} "
                  f"few {rows[name][seed].get('few', float('nan')):.2f}", flush=True)
    table = {name: {m: sr.mean_std([r.get(m) for r in by_seed.values()])
                    for m in sr.METRICS} for name, by_seed in rows.items()}
    folder.write_json(os.path.join(args.out, "validation.json"), {
        "per_seed": rows, "mean_std_n": table,
        "skipped_classes": source.skipped_classes if source else []})


if __name__ == "__main__":
    main()
