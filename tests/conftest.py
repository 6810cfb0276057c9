"""Test set-up: 8 fake CPU devices so sharding is exercised without accelerators.

Plain helpers that several tests and the worker scripts share are in tests/helpers/common.py
(importing this file would set the fake devices in a worker too)."""

import os
import sys

import pytest

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
