"""Classification evaluation, built once and run on any params (big_vision's
`evaluators/classification.py` is the model).

`Evaluator(model, data_cfg, source, train_source, mesh, batch_size)` holds the
eval loader (this process's shard of `source`, `batch_size / processes` images
per process and batch) and the jitted forward pass; `run(params)` returns the
metrics of `metrics.EvalAccumulator` (top-1/5, many/medium/few by the training
counts, ECE, per-class accuracy), the same on every process. BFT's periodic
eval, the `eval` stage (`evaluate_export`) and the validation study use it.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from livt_jax import checkpoint, mesh as mesh_lib, paths, report
from livt_jax.config_lib import stage_data_config, stage_image_size
from livt_jax.data import pipeline
from livt_jax.metrics import EvalAccumulator
from livt_jax.models import factory


def gather(x: jax.Array) -> np.ndarray:
    """A batch-sharded global array as one numpy array on every process."""
    if jax.process_count() > 1:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def scalar_metrics(result: dict) -> dict:
    """The scalar entries of a metrics dict (drops the per-class arrays)."""
    return {k: v for k, v in result.items() if np.ndim(v) == 0}


class Evaluator:
    """Scores a classifier's params on `source`: `run(params) -> metrics dict`.

    `model` is a ViT classifier (`__call__(images, train=False) -> logits (B, C)`);
    `train_source` gives the training counts (C,) that define the shot groups
    and the class names of the per-class outputs. `batch_size` is the global
    eval batch (a multiple of the device count); padded rows are masked out.
    `params_shardings` (a tree of NamedShardings) defaults to the FSDP layout
    `mesh.state_shardings` gives the params.
    """

    def __init__(self, model, data_cfg: ml_collections.ConfigDict, source, train_source,
                 mesh: Mesh, batch_size: int, params_shardings: Optional[Any] = None):
        mesh_lib.check_global_batch(batch_size, mesh)
        self.model, self.mesh, self.train_source = model, mesh, train_source
        self.train_counts = np.asarray(train_source.class_counts)
        abstract = factory.abstract_params(model)
        if params_shardings is None:
            params_shardings = mesh_lib.state_shardings(mesh, abstract)
        self.abstract_params = mesh_lib.sharded_abstract(abstract, params_shardings)
        self.loader = pipeline.make_eval_loader(
            data_cfg, source, batch_size=batch_size // jax.process_count(),
            shard_index=jax.process_index(), shard_count=jax.process_count())
        self._logits = jax.jit(
            lambda params, images: model.apply({"params": params}, images, train=False),
            in_shardings=(params_shardings, mesh_lib.batch_sharding(mesh)),
            out_shardings=mesh_lib.batch_sharding(mesh))

    @classmethod
    def for_config(cls, config: ml_collections.ConfigDict, mesh: Mesh, source=None
                   ) -> "Evaluator":
        """The BFT classifier of `config` scored on `source` (default: the eval split),
        at the finetune stage's image size, with `config.eval.batch_size`."""
        data_cfg = stage_data_config(config, "finetune")
        splits = pipeline.load_sources(data_cfg.data)
        train_source, eval_source = splits.train, splits.test
        model = factory.build_vit(config, len(train_source.class_counts),
                                  stage_image_size(config, "finetune"), drop_path=0.0)
        return cls(model, data_cfg, eval_source if source is None else source, train_source,
                   mesh, config.eval.batch_size)

    def load_export(self, path: str) -> Any:
        """A params export (`checkpoint.save_params_export`) laid out for `run`."""
        return checkpoint.load_params_export(path, self.abstract_params)

    def predict(self, params) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per eval batch, numpy on every process: logits (B, C), labels (B,), mask (B,)
        (0 = padding)."""
        for local in self.loader:
            batch = mesh_lib.global_batch_from_local(self.mesh, local)
            logits = gather(self._logits(params, batch["image"]))
            labels, mask = (gather(batch[k]) for k in ("label", "mask"))
            yield logits, labels, mask

    def run(self, params) -> dict:
        """Metrics of `params` over the whole source (see `metrics.EvalAccumulator.result`)."""
        accumulator = EvalAccumulator(len(self.train_counts))
        for logits, labels, mask in self.predict(params):
            accumulator.update(logits, labels, mask)
        return accumulator.result(self.train_counts)

    def write_outputs(self, workdir: str, name: str, result: dict) -> None:
        """`workdir/{name}_per_class.csv` and the accuracy-vs-count plot `.png`."""
        source = self.train_source
        report.write_per_class_csv(paths.join(workdir, f"{name}_per_class.csv"),
                                   source.class_names, self.train_counts,
                                   result["per_class_accuracy"])
        report.plot_per_class_accuracy(paths.join(workdir, f"{name}_per_class.png"),
                                       self.train_counts, result["per_class_accuracy"],
                                       f"per-class accuracy ({name})")


def evaluate_export(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The `eval` stage: scores `config.eval.params_from` (a ViT params export)."""
    if not config.eval.params_from:
        raise ValueError("stage 'eval' needs --config.eval.params_from=PATH (a params export)")
    paths.makedirs(workdir)
    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
    evaluator = Evaluator.for_config(config, mesh)
    if report.is_writer():
        print(f"eval: {mesh_lib.describe(mesh, config.eval.batch_size)}", flush=True)
    result = evaluator.run(evaluator.load_export(config.eval.params_from))
    evaluator.write_outputs(workdir, "eval", result)
    writer = report.MetricWriter(workdir, "eval")
    writer.write(0, scalar_metrics(result))
    writer.close()  # flushes TensorBoard (an object in a bucket is written on close)
    if report.is_writer():
        print(report.format_results_table(scalar_metrics(result)), flush=True)
    return {"final": scalar_metrics(result)}
