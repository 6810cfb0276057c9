"""The core package imports neither torch nor TensorFlow (they are optional extras)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = ["livt_jax.train", "livt_jax.main", "livt_jax.convert",
        "livt_jax.data.pipeline", "livt_jax.data.cache", "livt_jax.models.timm_convert"]


def test_core_modules_import_without_torch_or_tensorflow():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE) +
            "heavy = sorted(m for m in ('torch', 'tensorflow', 'timm') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout
