"""Test set-up: 8 fake CPU devices so sharding is exercised without accelerators.

Plain helpers that several tests and the worker scripts share are in tests/helpers/common.py
(importing this file would set the fake devices in a worker too)."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

# `configs/` (config-as-code files) is importable from tests.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()


@pytest.fixture(scope="session")
def gcs_bucket():
    """`gs://test-bucket` on a fake-gcs-server at 127.0.0.1 (tests/helpers/gcs_server.py),
    with every GCS client of this process and its subprocesses pointed there."""
    from tests.helpers.gcs_server import fake_gcs_server
    with fake_gcs_server(buckets=("test-bucket",)):
        yield "gs://test-bucket"


@pytest.fixture
def image_folder(tmp_path):
    """Eight small images (PNG RGB, PNG gray, JPEG) in class folders, with split lists."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    arrays, lines = {}, {"train": [], "test": []}
    for i in range(8):
        label = i % 3
        folder = root / f"class {label}"  # a space in the path
        folder.mkdir(parents=True, exist_ok=True)
        shape = (10 + i, 14 + 2 * i, 3) if i % 4 != 1 else (12, 9)
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        name = f"img{i}.jpg" if i % 4 == 2 else f"img{i}.png"
        Image.fromarray(array).save(folder / name)
        arrays[f"class {label}/{name}"] = array
        lines["train" if i < 6 else "test"].append(f"class {label}/{name} {label}")
    for split, split_lines in lines.items():
        (tmp_path / f"{split}.txt").write_text("\n".join(split_lines) + "\n\n")
    return tmp_path, arrays
