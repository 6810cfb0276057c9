"""`python -m livt_jax.tools.convert`: timm/MAE .pth/.safetensors <-> orbax params exports."""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax import checkpoint, state_dict_files
from livt_jax.models import timm_convert
from livt_jax.tools import convert
from tests.helpers import procs

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2)
NUM_CLASSES = 5
TARGET = ["--embed-dim", "32", "--depth", "2", "--num-heads", "2", "--patch-size", "4",
          "--img-size", "32"]


def tiny_timm_vit(num_classes: int = NUM_CLASSES, seed: int = 0):
    """A tiny timm ViT whose weights are all perturbed (no zero biases or unit norms)."""
    torch.manual_seed(seed)
    model = timm.models.vision_transformer.VisionTransformer(
        **TINY, global_pool="avg", num_classes=num_classes
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def our_vit(num_classes: int = NUM_CLASSES):
    from livt_jax.models.vit import VisionTransformer

    return VisionTransformer(num_classes=num_classes, global_pool="avg", **TINY)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = convert.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def to_jax(capsys, src, dst, *extra) -> tuple[int, str, str]:
    return cli(capsys, "to-jax", src, dst, *TARGET, "--num-classes", NUM_CLASSES, *extra)


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def timm_logits(model, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()


def our_logits(params, images: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    apply = jax.jit(functools.partial(our_vit(num_classes).apply, train=False))
    return np.asarray(apply({"params": params}, jnp.asarray(images)))


@pytest.fixture(scope="module")
def timm_model():
    return tiny_timm_vit()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)


# ------------------------------------------------------------ round trips


@pytest.mark.parametrize("wrapped", [True, False], ids=["release-wrapper", "bare"])
def test_pth_to_jax_and_back(tmp_path, capsys, timm_model, wrapped):
    state_dict = timm_model.state_dict()
    src = tmp_path / "in.pth"
    if wrapped:  # the release layout, with its argparse.Namespace `args`
        torch.save({"model": state_dict, "epoch": 99, "args": argparse.Namespace(lr=1e-3)}, src)
    else:
        torch.save(state_dict, src)
    code, out, err = to_jax(capsys, src, tmp_path / "export")
    assert code == 0, err
    assert "vit params" in out and "checked against" in out

    for name in ("out.pth", "out.safetensors"):
        code, _, err = cli(capsys, "to-torch", tmp_path / "export", tmp_path / name)
        assert code == 0, err
    back_pth = torch.load(tmp_path / "out.pth", weights_only=True)
    back_st = safetensors_torch.load_file(tmp_path / "out.safetensors")
    assert_same_tensors(back_pth, state_dict)
    assert_same_tensors(back_st, state_dict)
    for back in (back_pth, back_st):
        fresh = timm.models.vision_transformer.VisionTransformer(
            **TINY, global_pool="avg", num_classes=NUM_CLASSES
        )
        fresh.load_state_dict(back, strict=True)


def test_safetensors_input_and_wrapped_output(tmp_path, capsys, timm_model):
    state_dict = timm_model.state_dict()
    safetensors_torch.save_file(state_dict, tmp_path / "in.safetensors")
    assert to_jax(capsys, tmp_path / "in.safetensors", tmp_path / "export")[0] == 0
    code, _, err = cli(capsys, "to-torch", tmp_path / "export", tmp_path / "out.pth",
                       "--wrap-model")
    assert code == 0, err
    assert_same_tensors(torch.load(tmp_path / "out.pth", weights_only=True)["model"], state_dict)


def test_timm_loads_our_safetensors_strictly(tmp_path, capsys, images):
    """Our export -> .safetensors (written without torch) -> timm's own loader, strict."""
    rng = np.random.default_rng(2)
    params = jax.tree.map(lambda s: rng.normal(scale=0.2, size=s.shape).astype(np.float32),
                          timm_convert.model_shapes("vit", num_classes=NUM_CLASSES, **TINY))
    checkpoint.save_params_export(str(tmp_path / "export"), params)
    code, _, err = cli(capsys, "to-torch", tmp_path / "export", tmp_path / "ours.safetensors")
    assert code == 0, err
    model = timm.models.vision_transformer.VisionTransformer(
        **TINY, global_pool="avg", num_classes=NUM_CLASSES).eval()
    timm.models.load_checkpoint(model, str(tmp_path / "ours.safetensors"), strict=True)
    ours, ref = our_logits(params, images), timm_logits(model, images)
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_bfloat16_safetensors_input(tmp_path, capsys, timm_model):
    state_dict = {k: v.to(torch.bfloat16) for k, v in timm_model.state_dict().items()}
    safetensors_torch.save_file(state_dict, tmp_path / "bf16.safetensors")
    loaded = state_dict_files.load_torch_state_dict(str(tmp_path / "bf16.safetensors"))
    assert sorted(loaded) == sorted(state_dict)
    for key, value in state_dict.items():
        assert loaded[key].dtype == np.float32, key
        np.testing.assert_array_equal(loaded[key], value.float().numpy(), err_msg=key)


def test_converted_classifier_matches_timm_logits(tmp_path, capsys, timm_model, images):
    torch.save({"model": timm_model.state_dict()}, tmp_path / "in.pth")
    assert to_jax(capsys, tmp_path / "in.pth", tmp_path / "export")[0] == 0
    params = checkpoint.load_params_export(str(tmp_path / "export"))
    ours, ref = our_logits(params, images), timm_logits(timm_model, images)
    assert np.abs(ref).max() > 0.1  # the comparison is not between near-zero logits
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_mae_round_trip_detects_kind(tmp_path, capsys):
    from livt_jax.models.timm_convert import timm_state_dict_from_mae_params

    mae_kwargs = dict(**TINY, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    rng = np.random.default_rng(1)
    params = jax.tree.map(  # random values of the right shapes; no (slow) init needed
        lambda s: rng.normal(size=s.shape).astype(np.float32),
        timm_convert.model_shapes("mae", **mae_kwargs),
    )
    state_dict = timm_state_dict_from_mae_params(params, grid_size=8)
    torch.save({"model": {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}},
               tmp_path / "mgp.pth")

    mae_target = ["--decoder-embed-dim", "16", "--decoder-depth", "1", "--decoder-num-heads", "2"]
    code, out, err = cli(capsys, "to-jax", tmp_path / "mgp.pth", tmp_path / "export", *TARGET,
                         *mae_target)
    assert code == 0, err
    assert "Wrote mae params" in out
    code, _, err = cli(capsys, "to-torch", tmp_path / "export", tmp_path / "out.pth")
    assert code == 2 and "--img-size" in err
    code, _, err = cli(capsys, "to-torch", tmp_path / "export", tmp_path / "out.pth",
                       "--img-size", "32")
    assert code == 0, err
    back = torch.load(tmp_path / "out.pth", weights_only=True)
    assert sorted(back) == sorted(state_dict)
    for key, value in state_dict.items():
        np.testing.assert_allclose(back[key].numpy(), value, rtol=0, atol=1e-6, err_msg=key)


# ------------------------------------------------------------ errors


def test_wrong_shape_is_named(tmp_path, capsys, timm_model):
    torch.save(timm_model.state_dict(), tmp_path / "in.pth")
    code, _, err = cli(capsys, "to-jax", tmp_path / "in.pth", tmp_path / "export", *TARGET,
                       "--num-classes", "7")
    assert code == 2
    assert "head.bias" in err and "(7,)" in err
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda sd: sd.pop("blocks.1.mlp.fc2.bias"), "blocks.1.mlp.fc2.bias"),
        (lambda sd: sd.update({"extra.weight": torch.zeros(3)}), "extra.weight"),
    ],
    ids=["missing", "unexpected"],
)
def test_missing_and_unexpected_keys_are_named(tmp_path, capsys, timm_model, edit, named):
    state_dict = dict(timm_model.state_dict())
    edit(state_dict)
    torch.save(state_dict, tmp_path / "in.pth")
    code, _, err = to_jax(capsys, tmp_path / "in.pth", tmp_path / "export")
    assert code == 2 and named in err


def test_incomplete_target_is_named(tmp_path, capsys, timm_model):
    torch.save(timm_model.state_dict(), tmp_path / "in.pth")
    code, _, err = cli(capsys, "to-jax", tmp_path / "in.pth", tmp_path / "export",
                       "--embed-dim", "32")
    assert code == 2 and "--depth, --num-heads" in err


def test_existing_destination_and_unknown_extension(tmp_path, capsys, timm_model):
    torch.save(timm_model.state_dict(), tmp_path / "in.pth")
    assert to_jax(capsys, tmp_path / "in.pth", tmp_path / "export")[0] == 0
    code, _, err = to_jax(capsys, tmp_path / "in.pth", tmp_path / "export")
    assert code == 2 and "--force" in err
    assert to_jax(capsys, tmp_path / "in.pth", tmp_path / "export", "--force")[0] == 0
    code, _, err = cli(capsys, "to-torch", tmp_path / "export", tmp_path / "out.npz")
    assert code == 2 and "out.npz" in err


class _Payload:
    """Unpickling this runs shutil.copyfile(source, marker): a visible side effect."""

    def __init__(self, source: Path, marker: Path):
        self.args = (str(source), str(marker))

    def __reduce__(self):
        return shutil.copyfile, self.args


def test_pickled_code_is_refused_unless_unsafe_load(tmp_path, capsys, timm_model):
    marker = tmp_path / "marker"
    src = tmp_path / "evil.pth"
    torch.save({"model": timm_model.state_dict(), "extra": _Payload(src, marker)}, src)

    code, _, err = to_jax(capsys, src, tmp_path / "export")
    assert code == 2
    assert "Refusing to load" in err and "--unsafe-load" in err and "shutil" in err
    assert not marker.exists()
    assert not (tmp_path / "export").exists()

    code, _, err = to_jax(capsys, src, tmp_path / "export", "--unsafe-load")
    assert code == 0, err
    assert "WARNING" in err
    assert marker.exists()


# ------------------------------------------------------------ iNat18 order


@pytest.mark.parametrize("n", [1, 11, 123, 8142])
def test_inat_lexicographic_order(n):
    order = timm_convert.inat_lexicographic_order(n)
    assert order.tolist() == [int(s) for s in sorted(map(str, range(n)))]


def test_inat_lexicographic_order_head():
    assert timm_convert.inat_lexicographic_order(12).tolist() == [0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="num_classes"):
        timm_convert.inat_lexicographic_order(0)


def test_reorder_inat_head_maps_release_outputs_to_numeric_labels(tmp_path, capsys, images):
    n = 12
    model = tiny_timm_vit(num_classes=n, seed=1)
    torch.save({"model": model.state_dict()}, tmp_path / "inat.pth")
    code, _, err = cli(capsys, "to-jax", tmp_path / "inat.pth", tmp_path / "export", *TARGET,
                       "--num-classes", n, "--reorder-inat-head")
    assert code == 0, err
    ours = our_logits(checkpoint.load_params_export(str(tmp_path / "export")), images, n)
    release = timm_logits(model, images)
    order = timm_convert.inat_lexicographic_order(n)
    # Release output j is the class named str(order[j]); ours puts it at label order[j].
    np.testing.assert_allclose(ours[:, order], release, rtol=1e-5, atol=1e-5)
    assert not np.allclose(ours, release, atol=1e-3)  # the permutation did something


# ------------------------------------------------------------ core helpers


def test_export_helpers_restore_onto_a_target(tmp_path):
    params = {"head": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
                       "bias": np.ones(3, np.float32)}}
    checkpoint.save_params_export(str(tmp_path / "e"), params)
    mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:2])
    shardings = {"head": {"kernel": jax.sharding.NamedSharding(mesh, jax.P("data")),
                          "bias": jax.sharding.NamedSharding(mesh, jax.P())}}
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          params, shardings)
    restored = checkpoint.load_params_export(str(tmp_path / "e"), target)
    kernel = restored["head"]["kernel"]
    assert isinstance(kernel, jax.Array) and kernel.sharding == shardings["head"]["kernel"]
    np.testing.assert_array_equal(kernel, params["head"]["kernel"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        checkpoint.load_params_export(str(tmp_path / "nowhere"))


@pytest.mark.slow
def test_core_import_has_no_torch_and_cli_help_works():
    code = (
        "import sys, livt_jax.tools.convert as c; assert 'torch' not in sys.modules, 'torch imported'; "
        "c.build_parser().parse_args(['to-jax', '-h'])"
    )
    out = procs.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                    timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--reorder-inat-head" in out.stdout and "--unsafe-load" in out.stdout
