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

import io
from typing import Any, Iterator, Optional

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from livt_jax import checkpoint, description, mesh as mesh_lib, paths, report
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


def logits_fn(model, mesh: Mesh, params_shardings: Any):
    """jitted `(params, images (B, S, S, C)) -> logits (B, C)`, the batch sharded over `mesh`."""
    return jax.jit(lambda params, images: model.apply({"params": params}, images, train=False),
                   in_shardings=(params_shardings, mesh_lib.batch_sharding(mesh)),
                   out_shardings=mesh_lib.batch_sharding(mesh))


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
        self._logits = logits_fn(model, mesh, params_shardings)

    @classmethod
    def for_config(cls, config: ml_collections.ConfigDict, mesh: Mesh, source=None,
                   splits: Optional[pipeline.Splits] = None) -> "Evaluator":
        """The BFT classifier of `config` scored on `source` (default: the eval split),
        at the finetune stage's image size, with `config.eval.batch_size`. `splits`
        are the config's data when already loaded."""
        data_cfg = stage_data_config(config, "finetune")
        splits = splits or pipeline.load_sources(data_cfg.data)
        train_source, eval_source = splits.train, splits.test
        model = factory.build_vit(config.model, config.data.in_chans,
                                  len(train_source.class_counts),
                                  stage_image_size(config, "finetune"), drop_path=0.0)
        return cls(model, data_cfg, eval_source if source is None else source, train_source,
                   mesh, config.eval.batch_size)

    def load_export(self, path: str) -> Any:
        """A params export (`checkpoint.save_params_export`) laid out for `run`; one
        whose description names another number of classes is refused in one line."""
        found = description.read(path)
        if found is not None:
            description.check_num_classes(found, len(self.train_counts), path,
                                          "the config's training data")
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

    def logits_and_labels(self, params) -> tuple[np.ndarray, np.ndarray]:
        """float32 logits (N, C) and int64 labels (N,) of every image of the source,
        padding dropped (one process: in the source's order)."""
        logits, labels = [], []
        for batch_logits, batch_labels, mask in self.predict(params):
            keep = np.asarray(mask).astype(bool)
            logits.append(np.asarray(batch_logits, np.float32)[keep])
            labels.append(np.asarray(batch_labels, np.int64)[keep])
        return np.concatenate(logits), np.concatenate(labels)

    def write_outputs(self, workdir: str, name: str, result: dict) -> None:
        """`workdir/{name}_per_class.csv` and the accuracy-vs-count plot `.png`."""
        source = self.train_source
        report.write_per_class_csv(paths.join(workdir, f"{name}_per_class.csv"),
                                   source.class_names, self.train_counts,
                                   result["per_class_accuracy"])
        report.plot_per_class_accuracy(paths.join(workdir, f"{name}_per_class.png"),
                                       self.train_counts, result["per_class_accuracy"],
                                       f"per-class accuracy ({name})")


def config_for_export(config: ml_collections.ConfigDict, export: str) -> ml_collections.ConfigDict:
    """`config` with the model and eval transform of the export's description (a
    classifier's), or unchanged for an export written without one."""
    found = description.read(export)
    if found is None:
        return config
    if found["kind"] != "vit":
        raise ValueError(f"{export} holds an MGP (MAE) export; eval needs a classifier (ViT) "
                         "export, e.g. WORKDIR/finetune/export")
    return description.apply(config, found, description.EVAL_KEYS, stage="finetune",
                             source=export)


LOGITS_FILE, VAL_LOGITS_FILE = "eval_logits.npz", "eval_val_logits.npz"


def save_logits(path: str, logits: np.ndarray, labels: np.ndarray, train_counts: np.ndarray,
                config: ml_collections.ConfigDict) -> None:
    """Writes `logits` float32 (N, C), `labels` int64 (N,), `train_class_counts` int64
    (C,) and the loss / τ that trained the model as an .npz (local or gs://)."""
    buffer = io.BytesIO()
    np.savez(buffer, logits=logits.astype(np.float32), labels=labels.astype(np.int64),
             train_class_counts=np.asarray(train_counts, np.int64),
             loss=np.str_(config.finetune.loss), tau=np.float64(config.finetune.tau))
    paths.write_bytes(path, buffer.getvalue())


def _score_and_save_logits(evaluator: Evaluator, params, path: str, config) -> dict:
    """`evaluator.run(params)`, from logits also written to `path` (`save_logits`)."""
    logits, labels = evaluator.logits_and_labels(params)
    accumulator = EvalAccumulator(len(evaluator.train_counts))
    accumulator.update(logits, labels)
    if report.is_writer():
        save_logits(path, logits, labels, evaluator.train_counts, config)
    return accumulator.result(evaluator.train_counts)


def evaluate_export(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The `eval` stage: scores `config.eval.params_from` (a ViT params export) on the
    test split. With `eval.save_logits` it also writes the test split's logits to
    `workdir/eval_logits.npz` and, when the data has a validation split, the
    validation logits to `workdir/eval_val_logits.npz` (see `save_logits`)."""
    if not config.eval.params_from:
        raise ValueError("stage 'eval' needs --config.eval.params_from=PATH (a params export)")
    paths.makedirs(workdir)
    config = config_for_export(config, config.eval.params_from)
    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
    splits = pipeline.load_sources(stage_data_config(config, "finetune").data)
    evaluator = Evaluator.for_config(config, mesh, splits=splits)
    if report.is_writer():
        print(f"eval: {mesh_lib.describe(mesh, config.eval.batch_size)}", flush=True)
    params = evaluator.load_export(config.eval.params_from)
    if not config.eval.save_logits:
        result = evaluator.run(params)
    else:
        result = _score_and_save_logits(evaluator, params, paths.join(workdir, LOGITS_FILE),
                                        config)
        if splits.val is not None:
            _score_and_save_logits(Evaluator.for_config(config, mesh, splits.val, splits),
                                   params, paths.join(workdir, VAL_LOGITS_FILE), config)
    evaluator.write_outputs(workdir, "eval", result)
    writer = report.MetricWriter(workdir, "eval")
    writer.write(0, scalar_metrics(result))
    writer.close()  # flushes TensorBoard (an object in a bucket is written on close)
    if report.is_writer():
        print(report.format_results_table(scalar_metrics(result)), flush=True)
    return {"final": scalar_metrics(result)}
