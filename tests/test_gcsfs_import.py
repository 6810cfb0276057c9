"""gcsfs is imported only when a gs:// path is used, and a missing or broken gcsfs is one
line naming the URL and the fix (run in fresh interpreters: imports are process-wide)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python(code: str, extra_path: str = "") -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (extra_path, REPO) if p)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu"})


def test_import_livt_jax_does_not_import_gcsfs():
    out = python("import sys, livt_jax, livt_jax.paths, livt_jax.main, livt_jax.train, "
                 "livt_jax.workdir_lock, livt_jax.report\nprint('gcsfs' in sys.modules)")
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


def test_missing_gcsfs_is_one_line():
    out = python("import sys; sys.modules['gcsfs'] = None\nfrom livt_jax import paths\n"
                 "try:\n    paths.read_text('gs://bucket/list.txt')\n"
                 "except paths.StorageError as e:\n    print(e)")
    (line,) = out.stdout.strip().splitlines()
    assert line.startswith("gs://bucket/list.txt needs gcsfs, which did not load (ImportError")
    assert line.endswith("pip install -U gcsfs")


def test_broken_gcsfs_is_one_line(tmp_path):
    (tmp_path / "gcsfs").mkdir()
    (tmp_path / "gcsfs" / "__init__.py").write_text(
        "raise AttributeError(\"module 'fsspec' has no attribute 'newer_api'\")\n")
    out = python("from livt_jax import paths\ntry:\n    paths.makedirs('gs://bucket/run')\n"
                 "except paths.StorageError as e:\n    print(e)", extra_path=str(tmp_path))
    (line,) = out.stdout.strip().splitlines()
    assert line.startswith("gs://bucket needs gcsfs, which did not load (AttributeError: module "
                           "'fsspec' has no attribute 'newer_api')"), line
