"""VisionTransformer: parity with timm, drop path, token padding, initialisation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer as TimmViT

from livt_jax.models.timm_convert import vit_params_from_timm
from livt_jax.models.vit import DropPath, VisionTransformer, pad_tokens, vit_kwargs

pytestmark = pytest.mark.torch

SMALL_32 = dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, num_classes=10)
SMALL_224 = dict(img_size=224, patch_size=16, embed_dim=64, depth=2, num_heads=4, num_classes=10)


def _timm_model(cfg, global_pool):
    """A timm ViT with every parameter (LayerNorms included) randomised."""
    torch.manual_seed(0)
    model = TimmViT(global_pool=global_pool, class_token=True, **cfg).eval()
    state = {}
    for key, value in model.state_dict().items():
        noise = 0.2 * torch.randn_like(value)
        is_ln_scale = key.endswith(("norm1.weight", "norm2.weight", "norm.weight"))
        state[key] = 1.0 + noise if is_ln_scale else noise
    model.load_state_dict(state)
    return model


def _jax_params(model, timm_model):
    images = jnp.zeros((1, model.img_size, model.img_size, 3))
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), images)
    state = {k: v.numpy() for k, v in timm_model.state_dict().items()}
    return {"params": vit_params_from_timm(state, expected=shapes["params"])}


def _random_images(cfg, batch=3, seed=0):
    size = cfg["img_size"]
    return np.random.default_rng(seed).normal(size=(batch, size, size, 3)).astype(np.float32)


def _eval(model, params, images):
    """Jitted eval-mode logits."""
    return jax.jit(functools.partial(model.apply, train=False))(params, images)


def _max_rel_error(ours, ref):
    return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize(
    "cfg, global_pool",
    [(SMALL_224, "avg"), (SMALL_32, "avg"), (SMALL_32, "token")],
    ids=["224-avg", "32-avg", "32-token"],
)
def test_logits_match_timm(cfg, global_pool):
    timm_model = _timm_model(cfg, global_pool)
    model = VisionTransformer(global_pool=global_pool, **cfg)
    params = _jax_params(model, timm_model)
    images = _random_images(cfg)
    with torch.no_grad():
        ref = timm_model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    ours = _eval(model, params, images)
    assert ours.shape == ref.shape == (3, cfg["num_classes"])
    assert _max_rel_error(ours, ref) <= 1e-5


def test_padding_does_not_change_logits():
    cfg = SMALL_32  # 65 tokens -> padded to 80
    params = _jax_params(VisionTransformer(**cfg), _timm_model(cfg, "avg"))
    images = _random_images(cfg)
    plain = _eval(VisionTransformer(**cfg), params, images)
    padded = _eval(VisionTransformer(pad_tokens_to=16, attention="xla", **cfg), params, images)
    assert _max_rel_error(padded, plain) <= 1e-6


def test_pad_tokens():
    x = jnp.ones((2, 65, 3))
    padded, lengths = pad_tokens(x, 16)
    assert padded.shape == (2, 80, 3)
    np.testing.assert_array_equal(lengths, [65, 65])
    assert float(jnp.abs(padded[:, 65:]).sum()) == 0.0
    for multiple in (0, 1, 13, 65):
        same, none = pad_tokens(x, multiple)
        assert same.shape == x.shape and none is None
    with pytest.raises(ValueError, match="pad_tokens_to=-1"):
        pad_tokens(x, -1)


def test_drop_path_train_only():
    cfg = SMALL_32
    params = _jax_params(VisionTransformer(**cfg), _timm_model(cfg, "avg"))
    images = _random_images(cfg)
    model = VisionTransformer(drop_path_rate=0.5, **cfg)
    reference = _eval(VisionTransformer(**cfg), params, images)
    np.testing.assert_array_equal(_eval(model, params, images), reference)
    train = jax.jit(functools.partial(model.apply, train=True))
    out_a = train(params, images, rngs={"dropout": jax.random.key(1)})
    out_b = train(params, images, rngs={"dropout": jax.random.key(2)})
    assert _max_rel_error(out_a, reference) > 1e-3
    assert _max_rel_error(out_a, out_b) > 1e-3
    np.testing.assert_array_equal(out_a, train(params, images, rngs={"dropout": jax.random.key(1)}))


def test_drop_path_is_per_sample():
    x = jnp.ones((4000, 5, 3))
    rngs = {"dropout": jax.random.key(0)}
    out = np.asarray(DropPath(0.3).apply({}, x, deterministic=False, rngs=rngs))
    per_sample = out.reshape(4000, -1)
    assert np.all(per_sample == per_sample[:, :1])  # one decision per sample
    assert set(np.unique(per_sample)) <= {0.0, np.float32(1 / 0.7)}
    assert abs(np.mean(per_sample[:, 0] > 0) - 0.7) < 0.03
    np.testing.assert_array_equal(DropPath(0.3).apply({}, x, deterministic=True), x)


def test_initialisation():
    model = VisionTransformer(
        num_classes=1000, img_size=32, patch_size=8, embed_dim=256, depth=1, num_heads=4
    )
    # Unoptimised XLA compiles the many random initialisers ~3x faster on CPU.
    init = jax.jit(
        functools.partial(model.init, train=False),
        compiler_options={"xla_backend_optimization_level": 0},
    )
    params = init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]

    def check_xavier(kernel, fan_in, fan_out):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        kernel = np.asarray(kernel)
        assert np.max(np.abs(kernel)) <= bound
        assert np.max(np.abs(kernel)) >= 0.97 * bound
        assert abs(np.std(kernel) / (bound / np.sqrt(3)) - 1) < 0.05

    check_xavier(params["patch_embed"]["proj"]["kernel"], 8 * 8 * 3, 256)  # flattened fans
    check_xavier(params["blocks_0"]["attn"]["qkv"]["kernel"], 256, 3 * 256)
    check_xavier(params["blocks_0"]["attn"]["proj"]["kernel"], 256, 256)
    check_xavier(params["blocks_0"]["mlp"]["fc1"]["kernel"], 256, 1024)
    check_xavier(params["blocks_0"]["mlp"]["fc2"]["kernel"], 1024, 256)
    head = np.asarray(params["head"]["kernel"])
    assert abs(np.std(head) / 2e-5 - 1) < 0.02 and abs(np.mean(head)) < 1e-6
    assert abs(np.std(params["cls_token"]) / 0.02 - 1) < 0.15
    assert abs(np.std(params["pos_embed"]) / 0.02 - 1) < 0.06
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(path)
        if name.endswith("['bias']"):
            assert not np.any(leaf), name
        if name.endswith("['scale']"):
            np.testing.assert_array_equal(leaf, 1.0, err_msg=name)


def test_features_without_head_and_variants():
    model = VisionTransformer(**{**SMALL_32, "num_classes": 0})
    shapes = jax.eval_shape(
        functools.partial(model.init, train=False), jax.random.key(0), jnp.zeros((2, 32, 32, 3))
    )
    assert "head" not in shapes["params"]
    apply = functools.partial(model.apply, train=False)
    out = jax.eval_shape(apply, shapes, jnp.zeros((2, 32, 32, 3)))
    assert out.shape == (2, 64)
    assert vit_kwargs("H") == dict(embed_dim=1280, depth=32, num_heads=16, patch_size=14)
    with pytest.raises(ValueError, match="'Q'"):
        vit_kwargs("Q")


@pytest.mark.parametrize(
    "kwargs, images, match",
    [
        (dict(global_pool="max"), (1, 32, 32, 3), "global_pool='max'"),
        (dict(attention="flash"), (1, 32, 32, 3), "attention='flash'"),
        (dict(img_size=30), (1, 30, 30, 3), "img_size=30"),
        ({}, (1, 64, 64, 3), r"\(1, 64, 64, 3\)"),
    ],
)
def test_bad_settings_raise(kwargs, images, match):
    model = VisionTransformer(**{**SMALL_32, **kwargs})
    with pytest.raises(ValueError, match=match):
        init = functools.partial(model.init, train=False)
        jax.eval_shape(init, jax.random.key(0), jnp.zeros(images))
