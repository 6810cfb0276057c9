"""Re-score saved eval logits: post-hoc logit adjustment, Bal-BCE's balanced rule, temperature.

    livt-adjust VAL.npz TEST.npz [--method logit_adjust|balanced|temperature]
                [--grid V1,V2,... | --value V]

`python -m livt_jax.adjust` is the same command. VAL.npz and TEST.npz are
logits files of the same export (`eval --config.eval.save_logits=True` writes
`WORKDIR/eval_logits.npz`: logits (N, C), labels (N,), the training class
counts, the loss and τ), one on a validation split and one on the test split.
Methods (π_c = n_c / Σn, the training prior; z the logits):

- `logit_adjust`: z − τ·log π (post-hoc logit adjustment, Menon et al. 2021);
- `balanced`: Bal-BCE's balanced rule log σ(z + m_c) − log π_c with its training
  margin m_c = τ·(log π_c − log(1 − π_c)); τ defaults to the file's training τ;
- `temperature`: z / T (changes confidences and ECE, not the ranking).

The parameter (τ or T) is chosen on VAL alone: the highest top-1 for
`logit_adjust` / `balanced`, the lowest negative log-likelihood for
`temperature`, over `--grid`; `--value` fixes it instead. TEST is read only
after the choice and only scored; the same file as VAL is refused. Prints the
validation scores of the grid, then the overall / many / medium / few / top-5 /
ECE table of TEST with the raw logits and re-scored (ECE of the softmax of the
scores). Errors are one line, exit status 2.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Callable, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from livt_jax import console, losses, metrics, paths, report

METHODS = ("logit_adjust", "balanced", "temperature")
GRIDS = {"logit_adjust": tuple(np.round(np.arange(0.0, 2.01, 0.25), 2)),
         "balanced": tuple(np.round(np.arange(0.0, 2.01, 0.25), 2)),
         "temperature": tuple(np.round(np.arange(0.5, 3.01, 0.1), 2))}
SYMBOL = {"logit_adjust": "τ", "balanced": "τ", "temperature": "T"}


# ----------------------------------------------------------------------------- scores (numpy)

def log_prior(train_counts: np.ndarray) -> np.ndarray:
    """log π_c (C,), float64."""
    return losses.class_log_priors(train_counts, dtype=np.float64)


def logit_adjusted(logits: np.ndarray, train_counts: np.ndarray, tau: float) -> np.ndarray:
    """z − τ·log π_c (N, C)."""
    return np.asarray(logits, np.float64) - tau * log_prior(train_counts)


def balanced_rule_scores(logits: np.ndarray, train_counts: np.ndarray, tau: float) -> np.ndarray:
    """log σ(z_c + m_c) − log π_c (N, C): a Bal-BCE model's posterior estimate over the prior."""
    shifted = np.asarray(logits, np.float64) + losses.bal_bce_margins(train_counts, tau,
                                                                      dtype=np.float64)
    return -np.logaddexp(0.0, -shifted) - log_prior(train_counts)


def tempered(logits: np.ndarray, train_counts: np.ndarray, temperature: float) -> np.ndarray:
    """z / T (N, C); `train_counts` unused (the signature of the other rules)."""
    del train_counts
    if temperature <= 0:
        raise ValueError(f"temperature {temperature}: expected a value > 0")
    return np.asarray(logits, np.float64) / temperature


RESCORE: Mapping[str, Callable] = {"logit_adjust": logit_adjusted,
                                   "balanced": balanced_rule_scores, "temperature": tempered}


def negative_log_likelihood(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean −log softmax(scores)[label] (nats)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.take_along_axis(log_probs, labels[:, None], axis=1).mean())


def score(scores: np.ndarray, labels: np.ndarray, train_counts: np.ndarray) -> dict:
    """`metrics.EvalAccumulator.result` of scores (N, C) against labels (N,)."""
    accumulator = metrics.EvalAccumulator(scores.shape[1])
    accumulator.update(scores, labels)
    return accumulator.result(train_counts)


# ----------------------------------------------------------------------------- logits files

class LogitsFile(NamedTuple):
    """An `eval_logits.npz`: logits float32 (N, C), labels int64 (N,), training counts (C,)."""
    path: str
    logits: np.ndarray
    labels: np.ndarray
    train_counts: np.ndarray
    loss: str
    tau: float


def read_logits(path: str) -> LogitsFile:
    """Reads a logits file (local or gs://); names what is missing or inconsistent."""
    try:
        data = np.load(io.BytesIO(paths.read_bytes(path, "an eval_logits.npz")),
                       allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a logits file ({' '.join(str(e).split())[:200]}); "
                         "expected the eval_logits.npz of `eval --config.eval.save_logits=True`"
                         ) from None
    missing = [k for k in ("logits", "labels", "train_class_counts") if k not in data.files]
    if missing:
        raise ValueError(f"{path} lacks {missing}: expected the eval_logits.npz of "
                         "`eval --config.eval.save_logits=True`")
    logits, labels = data["logits"], data["labels"].astype(np.int64)
    counts = data["train_class_counts"].astype(np.int64)
    if logits.ndim != 2 or labels.shape != logits.shape[:1] or counts.shape != logits.shape[1:]:
        raise ValueError(f"{path}: logits {logits.shape}, labels {labels.shape} and counts "
                         f"{counts.shape} do not fit (expected (N, C), (N,) and (C,))")
    return LogitsFile(path, logits, labels, counts,
                      str(data["loss"]) if "loss" in data.files else "",
                      float(data["tau"]) if "tau" in data.files else 1.0)


def check_pair(val: LogitsFile, test: LogitsFile) -> None:
    """Refuses files of two models, or the test file given as the validation file."""
    if not np.array_equal(val.train_counts, test.train_counts):
        raise ValueError(f"{val.path} and {test.path} have other training counts: they come "
                         "from different models")
    if val.logits.shape == test.logits.shape and np.array_equal(val.logits, test.logits):
        raise ValueError(f"{val.path} and {test.path} hold the same logits: the value would be "
                         "chosen on the test file; give a validation split's logits first")


# ----------------------------------------------------------------------------- choice on VAL

def choose(method: str, val: LogitsFile, grid: Sequence[float]) -> tuple[float, dict]:
    """The grid value chosen on the validation file alone, and each value's criterion
    (top-1 %, higher is better; NLL for temperature, lower is better). Ties: the first."""
    rescore = RESCORE[method]
    criterion = {}
    for value in grid:
        scores = rescore(val.logits, val.train_counts, value)
        criterion[value] = (negative_log_likelihood(scores, val.labels) if method == "temperature"
                            else score(scores, val.labels, val.train_counts)["top1"])
    pick = min if method == "temperature" else max
    return pick(criterion, key=criterion.get), criterion


def run(method: str, val_path: str, test_path: str, grid: Optional[Sequence[float]] = None,
        value: Optional[float] = None) -> dict:
    """Chooses the value on `val_path` (or takes `value`), then scores `test_path`:
    `{'value', 'criterion' (grid value -> validation score), 'raw', 'adjusted'}`."""
    val = read_logits(val_path)
    criterion = {}
    if value is None and grid is None and method == "balanced":
        value = val.tau  # the margin the model was trained with
    if value is None:
        value, criterion = choose(method, val, grid or GRIDS[method])
    test = read_logits(test_path)  # only now: nothing above saw it
    check_pair(val, test)
    adjusted = RESCORE[method](test.logits, test.train_counts, value)
    return {"value": value, "criterion": criterion,
            "raw": score(test.logits, test.labels, test.train_counts),
            "adjusted": score(adjusted, test.labels, test.train_counts)}


# ----------------------------------------------------------------------------- command line

def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas"
                                         ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: expected at least one number")
    return values


def build_parser() -> console.ArgumentParser:
    """The `livt-adjust` (= `python -m livt_jax.adjust`) argument parser."""
    parser = console.command_parser("livt-adjust", __doc__)
    parser.add_argument("val", help="logits file of a validation split (the value is chosen "
                        "here)")
    parser.add_argument("test", help="logits file of the test split (only scored)")
    parser.add_argument("--method", choices=METHODS, default="logit_adjust")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--grid", type=_floats, help="values to choose from on the validation "
                       "file (default: τ 0, 0.25, ..., 2; T 0.5, 0.6, ..., 3)")
    group.add_argument("--value", type=float, help="use this τ or T (nothing is chosen)")
    return parser


def format_report(method: str, result: dict) -> str:
    """The chosen value, the validation grid, and the test table (raw, re-scored)."""
    symbol = SYMBOL[method]
    lines = []
    if result["criterion"]:
        what = "NLL" if method == "temperature" else "top-1 %"
        grid = ", ".join(f"{v:g}: {c:.4g}" for v, c in result["criterion"].items())
        lines.append(f"validation {what} by {symbol}: {grid}")
        lines.append(f"chosen on validation: {symbol} = {result['value']:g}")
    else:
        lines.append(f"{symbol} = {result['value']:g} (given, nothing chosen)")
    lines.append("test:")
    lines.append(report.format_table([("raw", result["raw"]),
                                      (f"{method} {symbol}={result['value']:g}",
                                       result["adjusted"])]))
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """The `livt-adjust` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        result = run(args.method, args.val, args.test, grid=args.grid, value=args.value)
    except (ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return console.USAGE_ERROR
    print(format_report(args.method, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
