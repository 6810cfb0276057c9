"""`.safetensors` in and out of the converter with torch absent (its import blocked)."""

import os
import sys
import textwrap

import pytest

from tests.helpers import procs

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter: a meta-path finder makes `import torch` / `import timm`
# fail as if they were not installed, then params -> .safetensors -> params.
_SCRIPT = textwrap.dedent("""
    import importlib.abc, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("torch", "timm"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    try:
        import torch
        raise SystemExit("the torch block does not work")
    except ModuleNotFoundError:
        pass

    import jax, numpy as np
    from livt_jax import checkpoint
    from livt_jax.models import timm_convert
    from livt_jax.tools import convert

    workdir = sys.argv[1]
    tiny = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32),
                          timm_convert.model_shapes("vit", **tiny))
    checkpoint.save_params_export(f"{workdir}/export", params)
    assert convert.main(["to-torch", f"{workdir}/export", f"{workdir}/vit.safetensors"]) == 0
    assert convert.main(["to-jax", f"{workdir}/vit.safetensors", f"{workdir}/back",
                         "--embed-dim", "32", "--depth", "2", "--num-heads", "2",
                         "--patch-size", "4", "--img-size", "32", "--num-classes", "5"]) == 0
    back = checkpoint.load_params_export(f"{workdir}/back")
    jax.tree.map(np.testing.assert_array_equal, back, params)
    # A .pth needs torch: a clear error (exit status 2) saying which extra installs it.
    assert convert.main(["to-torch", f"{workdir}/export", f"{workdir}/vit.pth"]) == 2
    assert not any(m.partition(".")[0] in ("torch", "timm") for m in sys.modules)
    print("ROUND TRIP OK")
""")


def test_safetensors_round_trip_without_torch(tmp_path):
    result = procs.run([sys.executable, "-c", _SCRIPT, str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=180,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ROUND TRIP OK" in result.stdout
    assert "livt-jax[torch]" in result.stderr and ".pth" in result.stderr
    assert (tmp_path / "vit.safetensors").stat().st_size > 0
