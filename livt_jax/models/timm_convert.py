"""timm / MAE-release state dicts <-> our flax parameter trees (numpy only).

Key names map one to one (the LiVT release's timm names): ``blocks.{i}.attn.qkv.weight`` <->
``blocks_{i}/attn/qkv/kernel``; LayerNorm ``weight`` <-> ``scale``. Dense
weights are transposed (``W -> W.T``), the patch-embed conv goes
``(O, I, kh, kw) -> (kh, kw, I, O)``. The MAE's fixed sin-cos position
embeddings are not parameters of our MAE: they are checked and dropped on the
way in and regenerated on the way out.

State dict values may be numpy arrays or anything ``np.asarray`` accepts (CPU
torch tensors included); torch itself is never imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from livt_jax.models.pos_embed import sincos_2d

_BLOCK_LAYERS = r"(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
_PARAM = r"(weight|bias)"
_VIT_KEYS = re.compile(
    rf"cls_token|pos_embed|patch_embed\.proj\.{_PARAM}|blocks\.\d+\.{_BLOCK_LAYERS}"
    rf"|(norm|fc_norm|head)\.{_PARAM}"
)
_MAE_KEYS = re.compile(
    rf"cls_token|mask_token|patch_embed\.proj\.{_PARAM}|(decoder_)?blocks\.\d+\.{_BLOCK_LAYERS}"
    rf"|(norm|decoder_embed|decoder_norm|decoder_pred)\.{_PARAM}"
)
_MAE_FIXED = ("pos_embed", "decoder_pos_embed")
_BLOCK_KEYS = tuple(
    f"{layer}.{kind}"
    for layer in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    for kind in ("weight", "bias")
)
_LAYER_NORM = re.compile(r"(\w+_)?norm\d?")  # norm, norm1, norm2, fc_norm, decoder_norm
_SINCOS_ATOL = 1e-4
KINDS = ("vit", "mae")


# ----------------------------------------------------------------- key names


def _flax_path(key: str) -> tuple[str, ...]:
    """timm key -> flax path, e.g. ``blocks.3.norm1.weight -> (blocks_3, norm1, scale)``."""
    parts = re.sub(r"(blocks)\.(\d+)", r"\1_\2", key).split(".")
    if parts[-1] == "weight":
        parts[-1] = "scale" if len(parts) > 1 and _LAYER_NORM.fullmatch(parts[-2]) else "kernel"
    return tuple(parts)


def _timm_key(path: tuple[str, ...]) -> str:
    """flax path -> timm key (inverse of ``_flax_path``)."""
    leaf = {"kernel": "weight", "scale": "weight"}.get(path[-1], path[-1])
    key = ".".join(path[:-1] + (leaf,))
    return re.sub(r"(blocks)_(\d+)", r"\1.\2", key)


def _to_flax(key: str, value: np.ndarray) -> np.ndarray:
    if key.endswith(".weight") and value.ndim == 2:
        return value.T
    if key.endswith(".weight") and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    return value


def _to_timm(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel" and value.ndim == 2:
        return value.T
    if path[-1] == "kernel" and value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    return value


# ------------------------------------------------------------------ pytrees


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    flat = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix + (name,)))
        else:
            flat[prefix + (name,)] = value
    return flat


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return tree


# -------------------------------------------------------------- validation


def _check_known(keys, pattern: re.Pattern, what: str, hint: str = "") -> None:
    unknown = sorted(k for k in keys if not pattern.fullmatch(k))
    if unknown:
        raise KeyError(f"Unknown keys in {what} state dict: {unknown}.{hint}")


def _check_complete(keys: set[str], required: tuple[str, ...], what: str) -> None:
    """Every block 0..n-1 and every required key present; weight/bias come in pairs."""
    missing = [k for k in required if k not in keys]
    for prefix in ("blocks", "decoder_blocks"):
        ids = {int(m.group(1)) for k in keys if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
        missing += [
            f"{prefix}.{i}.{name}"
            for i in range(max(ids, default=-1) + 1)
            for name in _BLOCK_KEYS
            if f"{prefix}.{i}.{name}" not in keys
        ]
    for key in keys:
        for a, b in ((".weight", ".bias"), (".bias", ".weight")):
            if key.endswith(a) and key[: -len(a)] + b not in keys:
                missing.append(key[: -len(a)] + b)
    if missing:
        raise KeyError(f"Missing keys in {what} state dict: {sorted(set(missing))}.")


def _check_expected(flat: dict[tuple[str, ...], np.ndarray], expected: Mapping) -> None:
    """Same names and shapes as ``expected`` (params or ``jax.eval_shape`` tree)."""
    want = _flatten(expected)
    missing = sorted(_timm_key(p) for p in want if p not in flat)
    unexpected = sorted(_timm_key(p) for p in flat if p not in want)
    if missing or unexpected:
        raise KeyError(
            f"State dict does not match the expected parameters: missing {missing}, "
            f"unexpected {unexpected}."
        )
    for path in sorted(want):
        if tuple(np.shape(want[path])) != flat[path].shape:
            raise ValueError(
                f"Shape mismatch at {_timm_key(path)} ({'/'.join(path)}): converted "
                f"{flat[path].shape}, expected {tuple(np.shape(want[path]))}."
            )


def _convert_in(state_dict: Mapping[str, Any], expected: Mapping | None) -> dict[str, Any]:
    flat = {}
    for key, value in state_dict.items():
        value = np.asarray(value)
        flat[_flax_path(key)] = _to_flax(key, value)
    if expected is not None:
        _check_expected(flat, expected)
    return _unflatten(flat)


# ------------------------------------------------------------------- public


def vit_params_from_timm(
    state_dict: Mapping[str, Any], expected: Mapping | None = None
) -> dict[str, Any]:
    """timm ``VisionTransformer`` state dict -> ``VisionTransformer`` params (numpy).

    Args:
      state_dict: timm names (``cls_token``, ``pos_embed``, ``patch_embed.proj.*``,
        ``blocks.{i}.*``, ``norm.*`` or ``fc_norm.*``, ``head.*``).
      expected: optional params or shape tree (e.g. from ``jax.eval_shape``);
        names and shapes must match it.

    Raises:
      KeyError: unknown or missing keys (all listed).
      ValueError: a shape differs from ``expected`` (the first one named).
    """
    keys = set(state_dict)
    hint = " (an MGP/MAE checkpoint? use mae_params_from_timm)" if "mask_token" in keys else ""
    _check_known(keys, _VIT_KEYS, "ViT", hint)
    _check_complete(keys, ("cls_token", "pos_embed", "patch_embed.proj.weight"), "ViT")
    return _convert_in(state_dict, expected)


def timm_state_dict_from_vit_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``VisionTransformer`` params -> timm state dict of numpy arrays."""
    return {
        _timm_key(path): _to_timm(path, np.asarray(value))
        for path, value in _flatten(params).items()
    }


def _check_sincos(key: str, value: np.ndarray) -> None:
    """The MAE's fixed embeddings must be the sin-cos table we regenerate."""
    n, dim = value.shape[-2:] if value.ndim == 3 else (0, 0)
    grid = int(round(np.sqrt(max(n - 1, 0))))
    if value.ndim != 3 or value.shape[0] != 1 or grid == 0 or grid * grid != n - 1 or dim % 4:
        raise ValueError(f"{key} has shape {value.shape}, expected (1, 1 + g*g, D), D % 4 == 0.")
    error = np.max(np.abs(value[0] - sincos_2d(dim, grid, cls_token=True)))
    if error > _SINCOS_ATOL:
        raise ValueError(
            f"{key} is not the fixed 2-D sin-cos table (max abs difference {error:.3g}); "
            "our MAE cannot represent learned position embeddings."
        )


def mae_params_from_timm(
    state_dict: Mapping[str, Any], expected: Mapping | None = None
) -> dict[str, Any]:
    """MAE-release (MGP) state dict -> ``MaskedAutoencoder`` params (numpy).

    ``pos_embed`` / ``decoder_pos_embed`` are accepted, checked to be the fixed
    sin-cos tables, and dropped. Errors as in ``vit_params_from_timm``.
    """
    for key in _MAE_FIXED:
        if key in state_dict:
            _check_sincos(key, np.asarray(state_dict[key]))
    weights = {k: v for k, v in state_dict.items() if k not in _MAE_FIXED}
    _check_known(set(weights), _MAE_KEYS, "MAE")
    required = (
        "cls_token",
        "mask_token",
        "patch_embed.proj.weight",
        "norm.weight",
        "decoder_embed.weight",
        "decoder_norm.weight",
        "decoder_pred.weight",
    )
    _check_complete(set(weights), required, "MAE")
    return _convert_in(weights, expected)


def timm_state_dict_from_mae_params(
    params: Mapping[str, Any], *, grid_size: int
) -> dict[str, np.ndarray]:
    """``MaskedAutoencoder`` params -> MAE-release state dict, sin-cos tables included.

    ``grid_size`` (patches per side) sizes the regenerated ``pos_embed`` and
    ``decoder_pos_embed`` (``(1, 1 + grid_size**2, D)``, cls row zeros).
    """
    state = timm_state_dict_from_vit_params(params)
    for key, width_of in (("pos_embed", "cls_token"), ("decoder_pos_embed", "mask_token")):
        dim = np.shape(params[width_of])[-1]
        state[key] = sincos_2d(dim, grid_size, cls_token=True)[None]
    return state


# --------------------------------------------------------------------------
# Either kind: detection, target shapes, the iNat18 release's class order.
# --------------------------------------------------------------------------


def inat_lexicographic_order(num_classes: int) -> np.ndarray:
    """Numeric class id of each output of a released iNat18 head.

    The release builds its classes from folders named by category id, sorted as
    strings ("0", "1", "10", "100", ...). Entry ``j`` of the result is the
    numeric label (our label order) of the release's output ``j``; it equals
    ``[int(s) for s in sorted(map(str, range(num_classes)))]``.
    """
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}.")
    return np.array(sorted(range(num_classes), key=str), dtype=np.int64)


def reorder_inat_head(params: Mapping[str, Any]) -> dict[str, Any]:
    """Permutes a converted head from the release's string order to numeric labels.

    Output ``j`` of the release (class ``order[j]``) becomes output ``order[j]``:
    ``kernel[:, order[j]] <- kernel[:, j]`` and the same for the bias. Apply it
    once, to a head that came from a released iNat18 checkpoint.
    """
    if "head" not in params:
        raise ValueError("--reorder-inat-head needs a classifier with a 'head'; none found.")
    head = params["head"]
    order = inat_lexicographic_order(np.shape(head["bias"])[0])
    inverse = np.argsort(order)  # inverse[c] = release output holding class c
    kernel, bias = np.asarray(head["kernel"]), np.asarray(head["bias"])
    return {**params, "head": {"kernel": kernel[:, inverse], "bias": bias[inverse]}}


def detect_kind(names: Any) -> str:
    """``'mae'`` when decoder / mask-token names are present, else ``'vit'``.

    ``names`` are timm keys (``decoder_embed.weight``) or top-level param names.
    """
    return "mae" if any(n.startswith("decoder_") or n == "mask_token" for n in names) else "vit"


def model_shapes(kind: str, **model_kwargs: Any) -> Any:
    """Params tree of ``jax.ShapeDtypeStruct`` for a ViT (``kind='vit'``) or an MAE.

    ``model_kwargs`` are fields of ``VisionTransformer`` / ``MaskedAutoencoder``.
    Uses ``jax.eval_shape``: nothing is computed.
    """
    from livt_jax.models import factory
    from livt_jax.models.mae import MaskedAutoencoder
    from livt_jax.models.vit import VisionTransformer

    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; expected one of {KINDS}.")
    return factory.abstract_params(
        (VisionTransformer if kind == "vit" else MaskedAutoencoder)(**model_kwargs))


def _converters(kind: str):
    """``(from_timm, to_timm)`` functions of this module for ``kind``."""
    if kind == "vit":
        return vit_params_from_timm, timm_state_dict_from_vit_params
    if kind == "mae":
        return mae_params_from_timm, timm_state_dict_from_mae_params
    raise ValueError(f"kind={kind!r}; expected one of {KINDS}.")


def params_from_state_dict(
    state_dict: Mapping[str, np.ndarray], kind: str | None = None, expected: Any = None
) -> tuple[str, Any]:
    """timm-named state dict -> ``(kind, params)``; ``kind`` None = detect it."""
    kind = kind or detect_kind(state_dict)
    from_timm, _ = _converters(kind)
    return kind, from_timm(state_dict, expected=expected)


def state_dict_from_params(
    params: Mapping[str, Any], img_size: int | None = None
) -> dict[str, np.ndarray]:
    """Our params (ViT or MAE, detected) -> timm-named numpy state dict.

    An MAE needs ``img_size``: its fixed sin-cos ``pos_embed`` tables are
    regenerated for that resolution (the patch size is read from the params).
    """
    kind = detect_kind(params)
    _, to_timm = _converters(kind)
    if kind == "vit":
        return to_timm(params)
    if img_size is None:
        raise ValueError("An MAE export needs --img-size to rebuild its sin-cos pos_embed tables.")
    patch_size = np.shape(params["patch_embed"]["proj"]["kernel"])[0]
    if img_size % patch_size:
        raise ValueError(f"--img-size {img_size} is not a multiple of the patch size {patch_size}.")
    return to_timm(params, grid_size=img_size // patch_size)
