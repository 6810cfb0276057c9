"""Logging into a bucket costs O(1) requests and O(new bytes) per log step: every byte
uploaded is counted at gcsfs's request layer (all of gcsfs's uploads pass there) over
training runs of two lengths against the local GCS server."""

import collections
import json
import re
import uuid

import gcsfs
import pytest

from livt_jax import paths, report, train
from tests.helpers.common import tiny_config

pytestmark = [pytest.mark.gcs, pytest.mark.e2e]

NAME = re.compile(rb'"name": "([^"]+)"')


@pytest.fixture
def uploads(monkeypatch):
    """{object name: [bytes uploaded, requests]} for every gcsfs request that carries data
    (uploads name their object in the request's JSON part) or composes one."""
    counts = collections.defaultdict(lambda: [0, 0])
    original = gcsfs.GCSFileSystem._call

    async def counting_call(self, method, path, *args, **kwargs):
        data = kwargs.get("data")
        if data is not None:
            match = NAME.search(bytes(data[:2000]))
            key = match.group(1).decode() if match else path
            counts[re.sub(r"\.part-[0-9a-f]+$", "", key)][0] += len(data)
            counts[re.sub(r"\.part-[0-9a-f]+$", "", key)][1] += 1
        elif path.endswith("/compose"):
            counts[args[1]][1] += 1
        return await original(self, method, path, *args, **kwargs)

    monkeypatch.setattr(gcsfs.GCSFileSystem, "_call", counting_call)
    monkeypatch.setattr(report, "FLUSH_EVERY_S", 0.0)  # worst case: every log step flushed
    return counts


def logged_run(bucket: str, uploads, epochs: int) -> tuple[int, dict, str]:
    """A tiny finetune run with a workdir in the bucket: (log steps, {object: [bytes,
    requests]}, workdir)."""
    uploads.clear()
    workdir = f"{bucket}/{uuid.uuid4().hex[:8]}"
    config = tiny_config(**{"finetune.epochs": epochs})
    config.stage = "finetune"
    config.checkpoint.save_every_steps = 1000
    train.train_and_evaluate(config, workdir)
    prefix = workdir.removeprefix(f"{bucket}/")
    steps = sum(1 for r in report.read_metrics(f"{workdir}/metrics.jsonl") if "loss" in r)
    return steps, {k.removeprefix(prefix + "/"): v for k, v in uploads.items()
                   if k.startswith(prefix)}, workdir


def log_objects(counts: dict) -> dict:
    """{'metrics.jsonl': name, 'events': name} -> their [bytes, requests] and names."""
    events = next(k for k in counts if "tfevents" in k)
    return {"metrics.jsonl": ("metrics.jsonl", counts["metrics.jsonl"]),
            "events": (events, counts[events])}


def test_log_uploads_grow_linearly_with_the_run(gcs_bucket, uploads):
    short_steps, short, _ = logged_run(gcs_bucket, uploads, 1)
    long_steps, long, workdir = logged_run(gcs_bucket, uploads, 3)
    assert long_steps == 3 * short_steps >= 30
    short, long = log_objects(short), log_objects(long)
    for kind, (name, (b_long, r_long)) in long.items():
        b_short, r_short = short[kind][1]
        # Each byte goes up once (plus each request's fixed multipart framing): the
        # uploaded total is the object's size, not a sum of ever larger rewrites.
        size = len(paths.read_bytes(f"{workdir}/{name}"))
        assert size <= b_long <= size + 400 * r_long, (kind, b_long, size)
        # Three times the steps: three times the bytes and requests (quadratic: nine).
        assert 2.5 < b_long / b_short < 3.5 and r_long / r_short < 3.5, (kind, short, long)
        assert r_long <= 3 * (long_steps + 4), kind  # at most 3 requests per flush
    records = [json.loads(line) for line in paths.read_text(f"{workdir}/metrics.jsonl").splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, long_steps + 1))
