"""What a run writes for people: metrics.jsonl + TensorBoard, per-class CSV, PNG plots.

Only process 0 writes; every function here is a no-op elsewhere.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np

from livt_jax import config_lib, metrics, paths

GROUPS = ("many", "medium", "few")
# In a bucket, metric lines and TensorBoard events are buffered and appended at most
# this often (and at every checkpoint and at the end): each append is O(1) requests.
FLUSH_EVERY_S = 30.0


def is_writer() -> bool:
    return jax.process_index() == 0


def read_metrics(path: str, stage: Optional[str] = None) -> list[dict]:
    """The records of a `metrics.jsonl` (or of `path/metrics.jsonl` for a run's
    folder), oldest first: `{'stage', 'step', **scalars}` dicts, only `stage`'s
    when given; `[]` when the file does not exist."""
    if paths.is_dir(path):
        path = paths.join(path, "metrics.jsonl")
    if not paths.exists(path):
        return []
    text = paths.read_text(path, "a metrics.jsonl")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [r for r in records if stage is None or r["stage"] == stage]


class MetricWriter:
    """Appends `{'step', 'stage', **scalars}` lines to `workdir/metrics.jsonl` and
    mirrors the scalars to TensorBoard (`workdir/tb/STAGE`), with `hparams` (a flat
    `{name: value}` dict, e.g. `flat_hparams(config)`) on TensorBoard's HParams tab.

    On a local disk every line is written at once. In a bucket, lines and events
    are buffered and appended (objects composed, never rewritten) by `flush()`,
    which `write` calls at most every `flush_every_s`; call `flush()` when a
    checkpoint is saved, so the log never lags behind the checkpoint."""

    def __init__(self, workdir: str, stage: str, hparams: Optional[Mapping[str, Any]] = None,
                 flush_every_s: Optional[float] = None):
        self.stage = stage
        self._jsonl = paths.join(workdir, "metrics.jsonl")
        self._buffered = paths.is_url(workdir)
        self._flush_every_s = FLUSH_EVERY_S if flush_every_s is None else flush_every_s
        self._pending: list[str] = []
        self._last_flush = time.monotonic()
        self._tb = None
        if is_writer():
            from tensorboardX import SummaryWriter
            if self._buffered:
                _write_events_through_paths(workdir.partition("://")[0])
            self._tb = SummaryWriter(paths.join(workdir, "tb", stage))
            if hparams:
                self._write_hparams(hparams)

    def _write_hparams(self, hparams: Mapping[str, Any]) -> None:
        from tensorboardX.summary import hparams as hparams_summaries
        metrics = {f"{self.stage}/{name}": 0.0 for name in ("loss", "eval_top1")}
        for summary in hparams_summaries(dict(hparams), metrics):
            self._tb.file_writer.add_summary(summary)

    def write(self, step: int, scalars: Mapping[str, Any]) -> None:
        if not is_writer():
            return
        clean = {k: float(v) for k, v in scalars.items() if np.ndim(v) == 0 and v is not None}
        self._pending.append(json.dumps({"stage": self.stage, "step": int(step), **clean}) + "\n")
        for key, value in clean.items():
            self._tb.add_scalar(f"{self.stage}/{key}", value, step)
        if not self._buffered or time.monotonic() - self._last_flush >= self._flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Writes the buffered lines and TensorBoard events."""
        if not is_writer():
            return
        if self._pending:
            paths.append_text(self._jsonl, "".join(self._pending))
            self._pending = []
        self._tb.flush()
        self._last_flush = time.monotonic()

    def read_eval_history(self) -> list[dict]:
        """This stage's earlier evaluations as `{'top1': ..., 'epoch': ...}` dicts."""
        return [{k[len("eval_"):]: v for k, v in r.items() if k.startswith("eval_")}
                for r in read_metrics(self._jsonl, self.stage) if "eval_top1" in r]

    def truncate_after(self, step: int) -> None:
        """Drops this stage's lines logged after `step` (a run killed after its
        last checkpoint repeats those steps when it resumes)."""
        if not is_writer():
            return
        kept = [r for r in read_metrics(self._jsonl)
                if r["stage"] != self.stage or r["step"] <= step]
        paths.write_text(self._jsonl, "".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self._tb is not None:
            self.flush()
            self._tb.close()


def flat_hparams(config: Mapping[str, Any]) -> dict[str, Any]:
    """A nested config as `{'a.b': value}` with TensorBoard hparam types (bool,
    int, float, str; anything else as its text)."""
    return {name: value if isinstance(value, (bool, int, float, str)) else str(value)
            for name, value in config_lib.flatten(config).items()}


class _EventObject:
    """A TensorBoard event file in a bucket: written bytes are buffered, and each
    flush appends them to the object (`paths.append_bytes`: composed, not rewritten).
    tensorboardX flushes from its own thread too, hence the lock."""

    def __init__(self, url: str):
        self.url, self.pending, self.lock = url, bytearray(), threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            self.pending += data

    def flush(self) -> None:
        with self.lock:
            data, self.pending = bytes(self.pending), bytearray()
            if data:
                paths.append_bytes(self.url, data)

    def close(self) -> None:
        self.flush()


class _EventObjectFactory:
    """tensorboardX's writer-factory interface for `scheme://` event files."""

    def open(self, url: str) -> _EventObject:
        return _EventObject(url)

    def directory_check(self, url: str) -> None:
        paths.makedirs(url)


def _write_events_through_paths(scheme: str) -> None:
    """Routes tensorboardX's `scheme://` event files through `paths` (its own GCS
    writer retries for minutes and re-uploads from `__del__` after close)."""
    from tensorboardX import record_writer
    record_writer.register_writer_factory(scheme, _EventObjectFactory())


def write_per_class_csv(path: str, class_names: Sequence[str], train_counts: np.ndarray,
                        accuracies: np.ndarray) -> None:
    """One row per class: index, name, training count, shot group, test accuracy (%)."""
    if not is_writer():
        return
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["class", "name", "train_count", "group", "accuracy"])
    groups = metrics.shot_group_names(train_counts)
    for c, (name, n, acc) in enumerate(zip(class_names, train_counts, accuracies)):
        writer.writerow([c, name, int(n), groups[c], f"{acc:.4f}"])
    paths.write_text(path, text.getvalue())


def plot_per_class_accuracy(path: str, train_counts: np.ndarray, accuracies: np.ndarray,
                            title: str) -> None:
    """Scatter of per-class test accuracy (%) against training count (log x)."""
    if not is_writer():
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(train_counts, accuracies, s=14)
    accuracy_vs_count_axes(ax, "test accuracy (%)")
    ax.set_title(title)
    save_plot(fig, path, dpi=120)


def accuracy_vs_count_axes(ax, ylabel: str) -> None:
    """Log-count x axis, 0–100 % y axis and the few/medium/many boundaries (20, 100)."""
    from matplotlib.ticker import NullFormatter
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # narrow ranges crowd the minor labels
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-2, 102)
    for threshold in (metrics.FEW_THRESHOLD, metrics.MANY_THRESHOLD):
        ax.axvline(threshold, color="grey", lw=0.8, ls="--")


def line_plot_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Axis labels, a small title, a light grid and the legend of a line plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def save_plot(fig, path: str, dpi: int) -> None:
    """Lays out `fig`, writes it to `path` (local or URL) at `dpi` and closes it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    paths.save_figure(fig, path, dpi=dpi)
    plt.close(fig)


def save_image_grid(path: str, rows: Sequence[np.ndarray], row_titles: Sequence[str]) -> None:
    """Saves images `rows[r][i]` (H, W, C floats in [0, 1]) as a labelled grid PNG."""
    if not is_writer():
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(rows[0])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.4 * n, 1.5 * len(rows)), squeeze=False)
    for r, (images, title) in enumerate(zip(rows, row_titles)):
        for i in range(n):
            image = np.clip(images[i], 0.0, 1.0)
            axes[r, i].imshow(image[..., 0] if image.shape[-1] == 1 else image,
                              cmap="gray" if image.shape[-1] == 1 else None)
            axes[r, i].axis("off")
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    save_plot(fig, path, dpi=120)


def format_step_line(stage: str, step: int, total_steps: int, epoch: float,
                     metrics: Mapping[str, Any], images_per_s: float, eta_s: float) -> str:
    """One plain log line: `finetune step 120/1000 epoch 2.40 loss 0.4123 lr 1.20e-04
    img/s 1534 ETA 0:09:34`."""
    eta = int(round(eta_s))
    return (f"{stage} step {step}/{total_steps} epoch {epoch:.2f} loss {float(metrics['loss']):.4f} "
            f"lr {float(metrics['lr']):.2e} img/s {images_per_s:.0f} "
            f"ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}")


def format_eval_line(stage: str, label: str, step: int, scalars: Mapping[str, Any]) -> str:
    """One plain line per evaluation, with whichever of top-1, many, medium, few and
    top-5 (%) it has: `finetune eval step 150 epoch 3.00: top-1 45.20 many 60.10 ...`."""
    names = {"top1": "top-1", **{g: g for g in GROUPS}, "top5": "top-5"}
    cells = " ".join(f"{name} {float(scalars[key]):.2f}" for key, name in names.items()
                     if key in scalars)
    epoch = f" epoch {float(scalars['epoch']):.2f}" if "epoch" in scalars else ""
    return f"{stage} {label} step {step}{epoch}: {cells}"


def format_results_table(final: Mapping[str, Any], best: Optional[Mapping[str, Any]] = None) -> str:
    """A small text table of overall / many / medium / few (+ top-5, ECE)."""
    return format_table([("final", final), ("best", best)])


def format_table(rows: Sequence[tuple[str, Optional[Mapping[str, Any]]]]) -> str:
    """`format_results_table` with any labelled rows (None rows are left out)."""
    columns = ("top1", *GROUPS, "top5", "ece")
    width = max([8] + [len(label) + 1 for label, result in rows if result is not None])
    header = " " * width + "".join(f"{c:>9s}" for c in columns)
    lines = [header]
    for label, result in rows:
        if result is None:
            continue
        cells = "".join(f"{result[c]:9.2f}" if c in result else f"{'-':>9s}" for c in columns)
        suffix = f"   (epoch {result['epoch']})" if "epoch" in result else ""
        lines.append(f"{label:{width}s}{cells}{suffix}")
    return "\n".join(lines)
