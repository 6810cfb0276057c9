"""sin-cos position embeddings and torch-exact bicubic resizing."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from livt_jax.models.pos_embed import resize_pos_embed, sincos_2d

pytestmark = pytest.mark.torch


def _sincos_reference(dim, grid):
    """The MAE release's 2-D sin-cos table written out element by element."""
    table = np.zeros((grid * grid, dim))
    quarter = dim // 4
    for row in range(grid):
        for col in range(grid):
            for j in range(dim):
                pos = col if j < dim // 2 else row  # first half: column (w)
                k = j % (dim // 2)
                omega = 1.0 / 10000 ** ((k % quarter) / quarter)
                table[row * grid + col, j] = (math.sin if k < quarter else math.cos)(pos * omega)
    return table


@pytest.mark.parametrize("dim, grid", [(16, 4), (32, 7), (8, 1)])
def test_sincos_matches_formula(dim, grid):
    ours = sincos_2d(dim, grid)
    assert ours.shape == (grid * grid, dim) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _sincos_reference(dim, grid), atol=1e-6)
    with_cls = sincos_2d(dim, grid, cls_token=True)
    assert with_cls.shape == (grid * grid + 1, dim)
    np.testing.assert_array_equal(with_cls[0], 0.0)
    np.testing.assert_array_equal(with_cls[1:], ours)


def test_sincos_rejects_bad_dim():
    with pytest.raises(ValueError, match="embed_dim divisible by 4, got 10"):
        sincos_2d(10, 4)


def _torch_resize(pos, new_grid):
    """Reference: torch bicubic on the (1, D, g, g) grid, prefix row kept."""
    grid = pos[:, 1:]
    old = int(math.sqrt(grid.shape[1]))
    image = torch.from_numpy(grid).reshape(1, old, old, -1).permute(0, 3, 1, 2)
    out = F.interpolate(image, size=new_grid, mode="bicubic", align_corners=False)
    out = out.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1]).numpy()
    return np.concatenate([pos[:, :1], out], axis=1)


@pytest.mark.parametrize(
    "old, new", [(8, 14), (14, 8), (7, 7), (4, (3, 9)), (2, 1)], ids=str
)
def test_resize_matches_torch_bicubic(old, new):
    # float64 so that the comparison is not blurred by float32 rounding.
    pos = np.random.default_rng(0).normal(size=(1, 1 + old * old, 12))
    ours = resize_pos_embed(pos, new)
    ref = _torch_resize(pos, (new, new) if isinstance(new, int) else new)
    assert ours.shape == ref.shape and ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours[:, 0], pos[:, 0])
    assert resize_pos_embed(pos.astype(np.float32), new).dtype == np.float32


def test_resize_rejects_non_square_grid():
    with pytest.raises(ValueError, match="10 grid rows"):
        resize_pos_embed(np.zeros((1, 11, 4)), 3)
