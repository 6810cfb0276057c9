"""A study's files: its runs folder (OUT) and its records folder (RESULTS), read and written here.

    OUT/seed{S}/mgp/summary.json        a seed's MGP run (its export: summary["export"])
    OUT/seed{S}/{arm}/summary.json      an arm's BFT run (+ final_per_class.csv, metrics.jsonl)
    OUT/tune/{value}/summary.json       a tuning run (validation only)
    RESULTS/seed{S}_{arm}.json          a finished run's record (arm 'mgp': the MGP run)
    RESULTS/tune_{value}.json           a tuning run's record
    RESULTS/choice.json                 the tuned value and the validation scores it was chosen by

A summary is what `train.train_and_evaluate` returned (plus the driver's fields); a
record is the part of it the tables need, small enough to commit. Every write is
atomic (`paths.write_text_atomic`), so a reader never sees half a file.
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Optional

from livt_jax import paths

MGP = "mgp"  # the MGP run's name among a seed's runs
SUMMARY = "summary.json"
CHOICE = "choice.json"


def read_json(path: str) -> Optional[dict]:
    """The JSON object at `path`, or None when the file does not exist."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str, obj: Any) -> None:
    """Writes `obj` as JSON (NumPy scalars as floats), atomically."""
    paths.write_text_atomic(path, json.dumps(obj, indent=1, default=float))


def value_name(value: Any) -> str:
    """A tuning value as it names a folder or a record: 0.01 -> '0.01', 1e-05 -> '1e-05'."""
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


# ----------------------------------------------------------------------------- runs (OUT)

def run_dir(out: str, seed: int, arm: str) -> str:
    """The workdir of one (arm, seed) run; arm MGP is the seed's MGP run."""
    return os.path.join(out, f"seed{seed}", arm)


def tune_dir(out: str, value: Any) -> str:
    return os.path.join(out, "tune", value_name(value))


def read_summary(workdir: str) -> Optional[dict]:
    """A run's summary, or None while the run is unfinished (or never started)."""
    return read_json(os.path.join(workdir, SUMMARY))


def write_summary(workdir: str, summary: dict) -> None:
    write_json(os.path.join(workdir, SUMMARY), summary)


def list_runs(out: str) -> dict[str, dict[int, str]]:
    """arm -> seed -> workdir of every finished run under `out` (MGP runs included)."""
    runs: dict[str, dict[int, str]] = {}
    for path in sorted(glob.glob(os.path.join(out, "seed*", "*", SUMMARY))):
        workdir = os.path.dirname(path)
        match = re.fullmatch(r"seed(\d+)", os.path.basename(os.path.dirname(workdir)))
        if match:
            runs.setdefault(os.path.basename(workdir), {})[int(match.group(1))] = workdir
    return runs


# ----------------------------------------------------------------------------- records (RESULTS)

def record_path(results: str, seed: int, arm: str) -> str:
    return os.path.join(results, f"seed{seed}_{arm}.json")


def tune_record_path(results: str, value: Any) -> str:
    return os.path.join(results, f"tune_{value_name(value)}.json")


def read_records(results: str) -> dict[str, dict[int, dict]]:
    """arm -> seed -> record, for every `seed{S}_{arm}.json` in `results` (MGP included)."""
    records: dict[str, dict[int, dict]] = {}
    for path in sorted(glob.glob(os.path.join(results, "seed*_*.json"))):
        match = re.fullmatch(r"seed(\d+)_(.+)\.json", os.path.basename(path))
        if match:
            records.setdefault(match.group(2), {})[int(match.group(1))] = read_json(path)
    return records


def read_tune_records(results: str) -> dict[str, dict]:
    """value name -> record, for every `tune_{value}.json` in `results`."""
    return {os.path.basename(p)[len("tune_"):-len(".json")]: read_json(p)
            for p in sorted(glob.glob(os.path.join(results, "tune_*.json")))}


def read_choice(results: str) -> Optional[dict]:
    """The tuning's choice ({'key', 'value', 'validation_<metric>', 'rule'}), None if not made."""
    return read_json(os.path.join(results, CHOICE))


def write_choice(results: str, choice: dict) -> None:
    write_json(os.path.join(results, CHOICE), choice)
