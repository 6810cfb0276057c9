"""MaskedAutoencoder: patch order, masking, loss, init, padding, parity with a torch reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from timm.models.vision_transformer import Block as TimmBlock

from livt_jax.models.mae import (
    MaskedAutoencoder,
    mae_loss,
    num_kept,
    patchify,
    random_masking,
    unpatchify,
)
from livt_jax.models.pos_embed import sincos_2d
from livt_jax.models.timm_convert import timm_state_dict_from_mae_params

pytestmark = pytest.mark.torch

# Wide enough for the initialisation statistics; compile time hardly depends on width.
TINY = dict(
    img_size=32,
    patch_size=8,
    embed_dim=64,
    depth=2,
    num_heads=4,
    decoder_embed_dim=128,
    decoder_depth=1,
    decoder_num_heads=4,
)


def _images(batch=2, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, size, size, channels)).astype(np.float32)


def test_patchify_order_matches_loop():
    images = _images(batch=2, size=12, channels=2)
    p = 4
    expected = np.zeros((2, 9, p * p * 2), np.float32)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                for r in range(p):
                    for c in range(p):
                        for ch in range(2):
                            pixel = images[b, i * p + r, j * p + c, ch]
                            expected[b, i * 3 + j, (r * p + c) * 2 + ch] = pixel
    patches = patchify(jnp.asarray(images), p)
    np.testing.assert_array_equal(patches, expected)
    np.testing.assert_array_equal(unpatchify(patches, p), images)


@pytest.mark.parametrize("length, ratio, keep", [(196, 0.75, 49), (10, 0.33, 6)])
def test_random_masking(length, ratio, keep):
    assert num_kept(length, ratio) == keep
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, length, 5)), jnp.float32)
    rng = jax.random.key(7)
    kept, mask, ids_restore = random_masking(rng, x, ratio)
    ids_shuffle = np.asarray(jnp.argsort(jax.random.uniform(rng, (3, length)), axis=1))
    ids_restore = np.asarray(ids_restore)
    assert kept.shape == (3, keep, 5)
    for b in range(3):
        np.testing.assert_array_equal(ids_shuffle[b][ids_restore[b]], np.arange(length))
        np.testing.assert_array_equal(kept[b], np.asarray(x)[b, ids_shuffle[b, :keep]])
        removed = np.zeros(length)
        removed[ids_shuffle[b, keep:]] = 1
        np.testing.assert_array_equal(mask[b], removed)
    np.testing.assert_array_equal(np.sum(mask, axis=1), length - keep)


def test_mask_ratio_is_checked():
    with pytest.raises(ValueError, match="mask_ratio=1.0"):
        num_kept(10, 1.0)
    model = MaskedAutoencoder(**{**TINY, "mask_ratio": 0.0})
    rngs = {"params": jax.random.key(0), "masking": jax.random.key(1)}
    with pytest.raises(ValueError, match="mask_ratio=0.0 removes none of the 16"):
        jax.eval_shape(model.init, rngs, jnp.zeros((1, 32, 32, 3)))


def _loss_reference(images, pred, mask, p, norm_pix):
    """Per patch, element by element: (unbiased) normalised target, MSE, mean over removed."""
    b, h, w, c = images.shape
    total, count = 0.0, 0.0
    for n in range(b):
        for idx in range(pred.shape[1]):
            i, j = divmod(idx, w // p)
            target = images[n, i * p : (i + 1) * p, j * p : (j + 1) * p]
            target = target.reshape(-1).astype(np.float64)
            if norm_pix:
                target = (target - target.mean()) / np.sqrt(target.var(ddof=1) + 1e-6)
            total += mask[n, idx] * np.mean((pred[n, idx] - target) ** 2)
            count += mask[n, idx]
    return total / count


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_matches_reference(norm_pix):
    rng = np.random.default_rng(1)
    images = _images(batch=2, size=8, channels=3) * 2 + 1
    pred = rng.normal(size=(2, 4, 48)).astype(np.float32)
    mask = np.array([[1, 0, 1, 1], [0, 0, 1, 0]], np.float32)
    ours = mae_loss(jnp.asarray(images), jnp.asarray(pred), jnp.asarray(mask), 4, norm_pix)
    np.testing.assert_allclose(ours, _loss_reference(images, pred, mask, 4, norm_pix), rtol=1e-5)


@functools.lru_cache(maxsize=None)
def _tiny_params():
    rngs = {"params": jax.random.key(0), "masking": jax.random.key(1)}
    # Unoptimised XLA compiles the many random initialisers ~3x faster on CPU.
    options = {"xla_backend_optimization_level": 0}
    init = jax.jit(MaskedAutoencoder(**TINY).init, compiler_options=options)
    return init(rngs, jnp.zeros((1, 32, 32, 3)))


@functools.lru_cache(maxsize=None)
def _apply_fn(pad_tokens_to=0):
    """One jitted forward per padding setting."""
    return jax.jit(MaskedAutoencoder(pad_tokens_to=pad_tokens_to, **TINY).apply)


def _forward(params, images, seed=2, pad_tokens_to=0):
    return _apply_fn(pad_tokens_to)(params, images, rngs={"masking": jax.random.key(seed)})


def test_forward_shapes_and_params():
    params = _tiny_params()
    assert sorted(params["params"]) == [
        "blocks_0", "blocks_1", "cls_token", "decoder_blocks_0", "decoder_embed",
        "decoder_norm", "decoder_pred", "mask_token", "norm", "patch_embed",
    ]  # fmt: skip
    images = _images()
    loss, pred, mask = _forward(params, images)
    assert pred.shape == (2, 16, 8 * 8 * 3) and mask.shape == (2, 16)
    np.testing.assert_array_equal(np.sum(mask, axis=1), [12, 12])
    np.testing.assert_allclose(loss, mae_loss(images, pred, mask, 8, True), rtol=1e-6)
    _, _, other_mask = _forward(params, images, seed=3)
    assert np.any(mask != other_mask)


def test_padding_does_not_change_outputs():
    params, images = _tiny_params(), _images()
    loss, pred, mask = _forward(params, images)
    # 1 + 4 encoder tokens -> 8; 1 + 16 decoder tokens -> 24.
    padded = _forward(params, images, pad_tokens_to=8)
    np.testing.assert_array_equal(padded[2], mask)
    np.testing.assert_allclose(padded[1], pred, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(padded[0], loss, rtol=1e-6)


def test_initialisation():
    params = _tiny_params()["params"]

    def check_xavier(kernel, fan_in, fan_out):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        assert 0.97 * bound <= np.max(np.abs(kernel)) <= bound

    check_xavier(params["patch_embed"]["proj"]["kernel"], 8 * 8 * 3, 64)  # flattened fans
    check_xavier(params["decoder_embed"]["kernel"], 64, 128)
    check_xavier(params["decoder_pred"]["kernel"], 128, 8 * 8 * 3)
    check_xavier(params["decoder_blocks_0"]["attn"]["qkv"]["kernel"], 128, 3 * 128)
    assert abs(np.std(params["mask_token"]) / 0.02 - 1) < 0.25  # 128 samples
    assert abs(np.std(params["cls_token"]) / 0.02 - 1) < 0.35  # 64 samples
    for name in ("decoder_embed", "decoder_pred"):
        np.testing.assert_array_equal(params[name]["bias"], 0.0)
    for name in ("norm", "decoder_norm"):
        np.testing.assert_array_equal(params[name]["scale"], 1.0)
        np.testing.assert_array_equal(params[name]["bias"], 0.0)


class _TorchMAE(torch.nn.Module):
    """MAE forward as the MAE release defines it, built on timm Blocks, the mask given."""

    def __init__(self, cfg, grid):
        super().__init__()
        d, dd, p = cfg["embed_dim"], cfg["decoder_embed_dim"], cfg["patch_size"]
        norm = functools.partial(torch.nn.LayerNorm, eps=1e-6)
        block = functools.partial(TimmBlock, qkv_bias=True, norm_layer=norm)
        self.p = p
        self.patch_embed = torch.nn.Module()
        self.patch_embed.proj = torch.nn.Conv2d(3, d, p, stride=p)
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, grid * grid + 1, d))
        self.blocks = torch.nn.ModuleList(block(d, cfg["num_heads"]) for _ in range(cfg["depth"]))
        self.norm = torch.nn.LayerNorm(d, eps=1e-6)
        self.decoder_embed = torch.nn.Linear(d, dd)
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos_embed = torch.nn.Parameter(torch.zeros(1, grid * grid + 1, dd))
        self.decoder_blocks = torch.nn.ModuleList(
            block(dd, cfg["decoder_num_heads"]) for _ in range(cfg["decoder_depth"])
        )
        self.decoder_norm = torch.nn.LayerNorm(dd, eps=1e-6)
        self.decoder_pred = torch.nn.Linear(dd, p * p * 3)

    def forward(self, images, mask):
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        ids_shuffle = torch.argsort(mask, dim=1, stable=True)  # kept first
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        keep = int((mask[0] == 0).sum())
        x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_embed(self.norm(x))
        fill = self.mask_token.expand(x.shape[0], mask.shape[1] - keep, -1)
        rest = torch.cat([x[:, 1:], fill], dim=1)
        rest = torch.gather(rest, 1, ids_restore[:, :, None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], rest], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


def test_pred_matches_torch_reference():
    """Bonus parity: MAE-release key names load strictly; same pred given the same mask."""
    rng = np.random.default_rng(5)
    params = jax.tree_util.tree_map(
        lambda v: v + 0.05 * rng.normal(size=v.shape).astype(np.float32), _tiny_params()
    )
    images = _images()
    _, pred, mask = _forward(params, images)
    reference = _TorchMAE(TINY, grid=4)
    state = timm_state_dict_from_mae_params(params["params"], grid_size=4)
    reference.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=True)
    np.testing.assert_array_equal(state["pos_embed"][0], sincos_2d(64, 4, cls_token=True))
    with torch.no_grad():
        ref = reference(torch.tensor(images).permute(0, 3, 1, 2), torch.tensor(np.asarray(mask)))
    rel = np.max(np.abs(np.asarray(pred) - ref.numpy())) / np.max(np.abs(ref.numpy()))
    assert rel <= 1e-5
