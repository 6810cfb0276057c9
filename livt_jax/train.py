"""The training loop of both LiVT stages, sharded over a device mesh.

`train_and_evaluate(config, workdir)` runs the stage named by `config.stage`:
`pretrain` (MGP: an MAE on the long-tailed training set), `finetune` (BFT: the
encoder fine-tuned with Bal-BCE), `eval` (a params export scored on the eval
split) or `livt` (MGP, then BFT from MGP's export). `stage.build_stage` gives
the model, sharded state and jitted step; this module feeds it batches
assembled from per-process data, checkpoints, logs and evaluates
(`evaluator.Evaluator`), so the same code runs on 1 CPU, 8 GPUs or a TPU pod.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from livt_jax import (checkpoint, config_checks, config_guard, description, mesh as mesh_lib,
                      paths, preemption, profiling, report, stage as stage_lib, workdir_lock)
from livt_jax.data import pipeline
from livt_jax.evaluator import Evaluator, evaluate_export, scalar_metrics
from livt_jax.reconstruction import write_reconstructions

BEST_EXPORT = "best_export"  # BFT params of the best validation epoch so far


# ----------------------------------------------------------------------------- the loop

class _Progress:
    """Progress on process 0. On a terminal: a tqdm bar (step, loss, lr, images/s,
    ETA). Otherwise (a pod's or a batch job's log file): one plain line per log
    step (`report.format_step_line`). Evaluations are one line either way."""

    def __init__(self, stage: str, total_steps: int, start_step: int, global_batch: int,
                 steps_per_epoch: int):
        self.stage, self.total_steps, self.global_batch = stage, total_steps, global_batch
        self.steps_per_epoch = steps_per_epoch
        self.last_time, self.last_step = time.time(), start_step
        self.first = None  # (time, step) of the first update: ETA excludes compilation
        self.writer = report.is_writer()
        self.bar = None
        if self.writer and sys.stdout.isatty() and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=start_step, desc=stage,
                            dynamic_ncols=True, mininterval=1.0)

    def update(self, step: int, metrics: dict) -> float:
        """Shows `metrics` ('loss', 'lr') at `step`; returns images/s since the last update."""
        now = time.time()
        rate = (step - self.last_step) * self.global_batch / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        if self.first is None or step <= self.first[1]:
            self.first, eta = (now, step), (self.total_steps - step) * self.global_batch / rate
        else:
            eta = (self.total_steps - step) * (now - self.first[0]) / (step - self.first[1])
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}",
                                 img_s=f"{rate:.0f}", refresh=False)
            self.bar.update(step - self.bar.n)
        elif self.writer:
            print(report.format_step_line(self.stage, step, self.total_steps,
                                          step / self.steps_per_epoch, metrics, rate, eta),
                  flush=True)
        return rate

    def evaluation(self, step: int, scalars: dict, label: str = "eval") -> None:
        """One line with the evaluation's top-1 and shot-group accuracies."""
        if not self.writer:
            return
        line = report.format_eval_line(self.stage, label, step, scalars)
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _check_finite(losses_by_step: list[tuple[int, Any]], stage: str,
                  manager: ocp.CheckpointManager, state: Any = None,
                  step: int = 0) -> None:
    """Raises naming the first step whose loss is NaN or Inf (or, given `state`, when the
    state of `step` holds NaN or Inf) and saying how to resume from the last good checkpoint.

    Runs at log steps and before every checkpoint save or best-model export, so no
    checkpoint or export holds a state that a non-finite loss (or gradient) produced;
    the losses are fetched in one copy, never every step.
    """
    values = jax.device_get([v for _, v in losses_by_step])
    bad = [(at, value) for (at, _), value in zip(losses_by_step, values) if not np.isfinite(value)]
    if bad:
        what = f"loss is {bad[0][1]} at step {bad[0][0]}"
    elif state is not None and not checkpoint.all_finite(state):
        what = f"the train state holds NaN or Inf at step {step} (a gradient overflowed)"
    else:
        return
    latest = manager.latest_step()
    where = (f"the last checkpoint, step {latest} in {manager.directory}, predates it and is kept"
             if latest is not None else "no checkpoint was written")
    raise FloatingPointError(
        f"{what}: stopping the run, nothing saved from it; {where}. Lower {stage}.optim.blr or set "
        f"{stage}.optim.clip_grad_norm > 0 and rerun the same command with "
        "--config.allow_config_change=True to resume" + (" from it" if latest is not None else ""))


class _EvalTracker:
    """Per-epoch BFT evaluations: the history, the newest result and, when
    `select` (the evaluations are on a validation split), the best by top-1.

    On resume the history is read back from `metrics.jsonl`, so "best" covers
    the whole run, not only the part after the restart.
    """

    def __init__(self, writer: report.MetricWriter, earlier: list[dict], select: bool):
        self.writer, self.select = writer, select
        self.history = earlier
        self.best = max(earlier, key=lambda r: r["top1"]) if earlier and select else None
        self.last = None  # the newest result with per-class arrays

    def add(self, step: int, result: dict) -> bool:
        """Records an evaluation at `step`; True when it is a new best."""
        result["step"] = step
        scalars = scalar_metrics(result)
        self.writer.write(step, {f"eval_{k}": v for k, v in scalars.items()})
        self.history.append(scalars)
        self.last = result
        if self.select and (self.best is None or scalars["top1"] > self.best["top1"]):
            self.best = scalars
            return True
        return False


def _save_export(config, stage: str, path: str, params, train_source) -> None:
    """A params export of `stage` at `path` with its description (`model.json`)."""
    checkpoint.save_params_export(path, params)
    if report.is_writer():
        description.write(path, description.describe(config, stage, train_source))


def run_stage(config, workdir: str, stage: str) -> dict:
    """Trains one stage ('pretrain' or 'finetune') in `workdir`; returns its summary."""
    paths.makedirs(workdir)
    if stage == "finetune":
        config = stage_lib.with_init_description(config)
    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
    spec = stage_lib.stage_spec(config, stage, mesh)
    global_batch, data_cfg = spec.global_batch, spec.data
    if report.is_writer():
        print(f"{stage}: {mesh_lib.describe(mesh, global_batch)}", flush=True)
    splits = pipeline.load_sources(data_cfg.data)
    train_source = splits.train
    steps_per_epoch = max(len(train_source) // global_batch, 1)
    evaluating = stage == "finetune"
    selecting = evaluating and splits.val is not None  # keep the best epoch by validation
    total_steps = int(round(spec.settings.epochs * steps_per_epoch))
    built, state = stage_lib.build_stage(spec, mesh, train_source.class_counts,
                                         steps_per_epoch=steps_per_epoch, total_steps=total_steps)

    train_iter = iter(pipeline.make_train_loader(
        data_cfg, train_source, batch_size=global_batch // jax.process_count(), seed=config.seed,
        num_steps=total_steps, shard_index=jax.process_index(), shard_count=jax.process_count()))
    manager = checkpoint.make_manager(
        paths.join(workdir, checkpoint.CHECKPOINTS_DIR),
        save_every_steps=config.checkpoint.save_every_steps,
        keep=config.checkpoint.keep, keep_best=False,
        async_save=config.checkpoint.async_save)
    restored, start_step = checkpoint.restore_latest(
        manager, mesh_lib.sharded_abstract(state, built.shardings), train_iter)
    writer = report.MetricWriter(workdir, stage, hparams=report.flat_hparams(config.to_dict()))
    if restored is not None:
        state = restored
        writer.truncate_after(start_step)  # drop lines logged after the last checkpoint
        logging.warning("resumed %s from step %d", stage, start_step)

    if evaluating:  # on validation when there is one; without, on test, for the curve only
        evaluator = Evaluator(built.model, data_cfg, splits.val if selecting else splits.test,
                              train_source, mesh, config.eval.batch_size,
                              params_shardings=built.shardings.params)
        eval_every = max(int(round(config.finetune.eval_every_epochs * steps_per_epoch)), 1)

    progress = _Progress(stage, total_steps, start_step, global_batch, steps_per_epoch)
    stop = preemption.StopRequest(manager)
    evals = _EvalTracker(writer, writer.read_eval_history(), select=selecting)
    pending = []
    stop_after = config.stop_after_steps
    step = start_step
    profiler = profiling.StepWindowProfiler(workdir, config.profile.start_step,
                                            config.profile.num_steps)
    try:
        while step < total_steps:
            profiler.before_step(step, state)
            batch = mesh_lib.global_batch_from_local(mesh, next(train_iter))
            state, metrics = built.step(state, batch)
            step += 1
            pending.append((step, metrics["loss"]))
            if step % config.log_every_steps == 0 or step == total_steps:
                _check_finite(pending, stage, manager)
                pending = []
                scalars = jax.device_get(metrics)
                scalars["img_per_s"] = progress.update(step, scalars)
                writer.write(step, scalars)
            eval_result, improved = None, False
            if evaluating and (step % eval_every == 0 or step == total_steps):
                eval_result = evaluator.run(state.params)
                eval_result["epoch"] = step / steps_per_epoch
                improved = evals.add(step, eval_result)
                progress.evaluation(step, scalar_metrics(eval_result),
                                    "validation" if selecting else "test")
                if improved:  # the selected model, tested at the end
                    _check_finite(pending, stage, manager, state, step)
                    _save_export(config, stage, paths.join(workdir, BEST_EXPORT), state.params,
                                 train_source)
            preempted = stop.reached(step)  # every process, every step
            stopping = preempted or step == stop_after
            # A new best is checkpointed too, so a resumed run's history reaches it.
            if checkpoint.save(manager, step, state, train_iter,
                               force=stopping or step == total_steps or improved,
                               before=lambda: _check_finite(pending, stage, manager, state, step)):
                writer.flush()  # the log in a bucket never lags behind the checkpoint
            if stopping:
                manager.wait_until_finished()
                logging.warning("%s stopped at step %d (checkpoint saved; rerun to resume)",
                                stage, step)
                return {"stopped_at": step, "state": state, "preempted": preempted}
        _check_finite(pending, stage, manager)
    finally:
        profiler.stop()
        stop.close()
        progress.close()
        writer.close()
        manager.wait_until_finished()

    export_dir = paths.join(workdir, "export")
    _save_export(config, stage, export_dir, state.params, train_source)
    summary = {"state": state, "export": export_dir, "total_steps": total_steps}
    if stage == "pretrain":
        write_reconstructions(config, data_cfg, workdir, built.model, state.params,
                              splits.val if splits.val is not None else splits.test)
        return summary
    if not selecting:
        final = evals.last
        if final is None:  # resumed at the very end: score the final params once more
            final = evaluator.run(state.params)
            final["epoch"] = step / steps_per_epoch
        results = {"final": final}
    elif config.eval.test_at_end:
        results = _test_final_and_best(config, workdir, data_cfg, built, splits, mesh, state,
                                       evals, steps_per_epoch)
    else:  # a tuning run: validation only, the test split is never read
        results, evaluator = {}, None
    tester = results.pop("tester", evaluator)
    for name, result in results.items():
        tester.write_outputs(workdir, name, result)
    summary.update({name: scalar_metrics(r) for name, r in results.items()},
                   per_class={name: r["per_class_accuracy"].tolist() for name, r in results.items()},
                   history=evals.history, best_val=evals.best,
                   selected_on="validation" if selecting else None)
    if report.is_writer() and results:
        print(report.format_results_table(summary["final"], summary.get("best")), flush=True)
    return summary


def _test_final_and_best(config, workdir: str, data_cfg, built, splits, mesh, state, evals,
                         steps_per_epoch: int) -> dict:
    """Reads the test split once for the final params and once for the params of
    the best validation epoch (`workdir/best_export`). Returns
    `{'final': metrics, 'best': metrics, 'tester': Evaluator}`; each carries
    its `epoch` and the `val_top1` that chose it."""
    tester = Evaluator(built.model, data_cfg, splits.test, splits.train, mesh,
                       config.eval.batch_size, params_shardings=built.shardings.params)
    last_val = evals.history[-1]
    final = tester.run(state.params)
    final.update(epoch=int(state.step) / steps_per_epoch, val_top1=last_val["top1"])
    best_step = int(evals.best["step"])
    if best_step == int(state.step):
        best = dict(final)
    else:
        best = tester.run(tester.load_export(paths.join(workdir, BEST_EXPORT)))
        best.update(epoch=best_step / steps_per_epoch, val_top1=evals.best["top1"])
    return {"final": final, "best": best, "tester": tester}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs `config.stage` in `workdir`; returns the stage summary (metrics, export path).

    `livt` runs MGP in `workdir/pretrain` and BFT in `workdir/finetune`, the
    latter initialised from the former's export. The config is validated for
    every stage first, and the workdir is locked against a second run.
    """
    config_checks.validate(config, jax.device_count())
    with workdir_lock.hold(workdir, enabled=jax.process_index() == 0):
        config_guard.check_and_record(config, workdir)
        return _run_stages(config, workdir)


def _run_stages(config: ml_collections.ConfigDict, workdir: str) -> dict:
    if config.stage == "eval":
        return evaluate_export(config, workdir)
    if config.stage != "livt":
        return run_stage(config, workdir, config.stage)
    pretrain = run_stage(config, paths.join(workdir, "pretrain"), "pretrain")
    if "stopped_at" in pretrain:
        return pretrain
    config = config.copy_and_resolve_references()
    config.finetune.init_from = pretrain["export"]
    config.finetune.init_kind = "mae"
    return run_stage(config, paths.join(workdir, "finetune"), "finetune")
