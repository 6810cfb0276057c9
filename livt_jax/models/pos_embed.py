"""Position embeddings: fixed 2-D sin-cos (MAE) and torch-exact bicubic resizing.

Both work in numpy on the host: they build constants and convert checkpoints.
"""

from __future__ import annotations

import numpy as np

CUBIC_A = -0.75  # torch's bicubic coefficient


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """``(M,) -> (M, dim)``: ``[sin(pos * w), cos(pos * w)]``, ``w_k = 1 / 10000^(2k/dim)``."""
    omega = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(embed_dim: int, grid_size: int, cls_token: bool = False) -> np.ndarray:
    """Fixed 2-D sin-cos embeddings, float32 ``(grid_size**2 (+1), embed_dim)``.

    Tokens are in row-major order (row h, column w). The first half of the
    dims encodes the column w, the second half the row h; each half is
    ``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 1 / 10000^(k / (D/4))``.
    With ``cls_token`` a leading row of zeros is added.
    """
    if embed_dim <= 0 or embed_dim % 4:
        raise ValueError(f"sincos_2d needs embed_dim divisible by 4, got {embed_dim}.")
    if grid_size <= 0:
        raise ValueError(f"sincos_2d needs grid_size > 0, got {grid_size}.")
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    emb = np.concatenate(
        [_sincos_1d(embed_dim // 2, cols.ravel()), _sincos_1d(embed_dim // 2, rows.ravel())],
        axis=1,
    )
    if cls_token:
        emb = np.concatenate([np.zeros((1, embed_dim)), emb], axis=0)
    return emb.astype(np.float32)


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys cubic convolution weights for taps at offsets -1, 0, 1, 2: ``(M,) -> (M, 4)``."""
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` matrix of torch's 1-D bicubic interpolation.

    Matches ``F.interpolate(mode='bicubic', align_corners=False)`` given sizes:
    source coordinate ``(i + 0.5) * in/out - 0.5`` (not clamped), taps clamped
    to the border, no antialiasing.
    """
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    base = np.floor(src)
    weights = _cubic_weights(src - base)
    taps = np.clip(base[:, None].astype(np.int64) + np.arange(-1, 3), 0, in_size - 1)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_size), 4), taps.ravel()), weights.ravel())
    return matrix


def resize_pos_embed(pos_embed, new_grid, num_prefix_tokens: int = 1) -> np.ndarray:
    """Resizes a square grid of position embeddings with torch's bicubic kernel.

    Args:
      pos_embed: ``(1, P + g*g, D)``; the first ``num_prefix_tokens`` rows (cls)
        are kept unchanged, the rest is a row-major g x g grid.
      new_grid: new side length, or a ``(rows, cols)`` pair.
      num_prefix_tokens: number of leading non-grid rows.

    Returns:
      ``(1, P + rows*cols, D)`` numpy array with the dtype of ``pos_embed``.
    """
    pos_embed = np.asarray(pos_embed)
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed must have shape (1, P + g*g, D), got {pos_embed.shape}.")
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[0, num_prefix_tokens:]
    old = int(round(np.sqrt(grid.shape[0])))
    if old * old != grid.shape[0]:
        raise ValueError(
            f"pos_embed has {grid.shape[0]} grid rows after {num_prefix_tokens} prefix "
            "tokens, which is not a square grid."
        )
    rows, cols = (new_grid, new_grid) if np.isscalar(new_grid) else tuple(new_grid)
    if rows <= 0 or cols <= 0:
        raise ValueError(f"new_grid={new_grid} must be positive.")
    grid = grid.reshape(old, old, -1).astype(np.float64)
    resized = np.einsum(
        "ih,jw,hwd->ijd", bicubic_matrix(old, rows), bicubic_matrix(old, cols), grid
    )
    resized = resized.reshape(1, rows * cols, -1).astype(pos_embed.dtype)
    return np.concatenate([prefix, resized], axis=1)
