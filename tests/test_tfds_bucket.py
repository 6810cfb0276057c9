"""tfds data in a bucket (`data.source=tfds`, `data.data_dir=gs://...`), end to end against
the local GCS server: a tiny ArrayRecord dataset with ImageNet-LT's split names is built
here, uploaded, and read from the bucket by training + evaluation (the README's pod
command, shrunk), by the cache builder and by the input benchmark."""

import os
import subprocess
import sys
import uuid

import fsspec
import numpy as np
import pytest

from livt_jax import paths
from livt_jax.data.sources import CacheSource, TfdsSource
from livt_jax.tools import cache
from tests.helpers import tfds_tiny
from tests.helpers.common import TINY_MODEL_FLAGS

pytestmark = [pytest.mark.gcs, pytest.mark.e2e]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def local_tfds(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("tfds"))
    tfds_tiny.build(folder)
    return folder


@pytest.fixture
def bucket_tfds(gcs_bucket, local_tfds) -> str:
    """The dataset's tfds data_dir in the bucket."""
    data_dir = f"{gcs_bucket}/{uuid.uuid4().hex[:8]}/tensorflow_datasets"
    fsspec.filesystem("gs").put(f"{local_tfds}/{tfds_tiny.NAME}", f"{data_dir}/{tfds_tiny.NAME}",
                                recursive=True)
    return data_dir


def run(args, cwd, timeout=900) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_bucket_source_reads_what_the_local_one_reads(bucket_tfds, local_tfds):
    for split, counts in tfds_tiny.SPLITS.items():
        remote = TfdsSource(tfds_tiny.NAME, split, bucket_tfds)
        local = TfdsSource(tfds_tiny.NAME, split, local_tfds)
        assert list(remote.class_counts) == list(counts)
        np.testing.assert_array_equal(remote.labels, local.labels)
        for i in (0, len(local) - 1):
            np.testing.assert_array_equal(remote[i]["image"], local[i]["image"])


def test_pod_command_trains_and_evaluates_from_the_bucket(bucket_tfds, tmp_path):
    """`configs/imagenet_lt.py` with tfds from the bucket and loader workers, as the
    README's pod example, on the tiny dataset: tiny model, 32 px, 1 epoch per stage."""
    workdir = bucket_tfds.replace("tensorflow_datasets", "livt")
    run(["-m", "livt_jax.main", "--config", os.path.join(REPO, "configs/imagenet_lt.py"),
         "--workdir", workdir, "--config.data.source=tfds", f"--config.data.name={tfds_tiny.NAME}",
         f"--config.data.data_dir={bucket_tfds}", "--config.data.train_split=train",
         "--config.data.eval_split=test", "--config.data.worker_count=2",
         "--config.data.image_size=32", "--config.model.patch_size=8",
         "--config.pretrain.epochs=1", "--config.finetune.epochs=1",
         "--config.pretrain.batch_size=16", "--config.finetune.batch_size=16",
         "--config.eval.batch_size=16", *TINY_MODEL_FLAGS], tmp_path)
    rows = paths.read_text(f"{workdir}/finetune/final_per_class.csv").splitlines()
    assert [r.split(",")[1:3] for r in rows[1:]] == [["red", "16"], ["green", "8"], ["blue", "4"]]
    evals = [r for r in paths.read_text(f"{workdir}/finetune/metrics.jsonl").splitlines()
             if "eval_top1" in r]
    assert evals
    # ... and the eval stage scores the export, reading the test split from the bucket.
    out = run(["-m", "livt_jax.main", "--config", os.path.join(REPO, "configs/imagenet_lt.py"),
               "--workdir", f"{workdir}/eval", "--config.stage=eval",
               f"--config.eval.params_from={workdir}/finetune/export",
               "--config.data.source=tfds", f"--config.data.name={tfds_tiny.NAME}",
               f"--config.data.data_dir={bucket_tfds}", "--config.data.train_split=train",
               "--config.data.eval_split=test", "--config.data.image_size=32",
               "--config.model.patch_size=8", "--config.eval.batch_size=16", *TINY_MODEL_FLAGS], tmp_path)
    assert "eval" in out.stdout and paths.exists(f"{workdir}/eval/eval_per_class.csv")


def test_cache_builder_reads_the_bucket(bucket_tfds, tmp_path):
    out = str(tmp_path / "cache")
    assert cache.main(["--source", "tfds", "--name", tfds_tiny.NAME, "--data-dir", bucket_tfds,
                       "--split", "train", "--split", "validation", "--split", "test",
                       "--resize-shorter", "0", "--out", out]) == 0
    for split, counts in tfds_tiny.SPLITS.items():
        cached = CacheSource(out, split)
        assert list(np.bincount(cached.labels)) == list(counts)
        source = TfdsSource(tfds_tiny.NAME, split, bucket_tfds)
        np.testing.assert_array_equal(cached[0]["image"], source[0]["image"])


def test_input_benchmark_from_the_bucket(bucket_tfds):
    result = run(["-m", "livt_jax.tools.data_benchmark", "--source", "tfds", "--name", tfds_tiny.NAME,
                  "--data-dir", bucket_tfds, "--image-size", "32", "--in-chans", "3",
                  "--batch-size", "8", "--steps", "2", "--kinds", "bft", "--workers", "1"], REPO)
    (row,) = [line.split() for line in result.stdout.splitlines() if line.startswith("tfds")]
    assert row[:3] == ["tfds", "bft", "host"] and float(row[-1]) > 0
