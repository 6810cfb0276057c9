"""Convert LiVT / MAE / timm PyTorch checkpoints to and from livt-jax params exports.

Params export layout
--------------------
A *params export* is a directory written by ``orbax.checkpoint.StandardCheckpointer``
holding the single pytree ``{'params': params}``, where ``params`` is the flax
parameter tree of a ``VisionTransformer`` (ViT classifier, BFT) or a
``MaskedAutoencoder`` (MGP), e.g. ``params['blocks_0']['attn']['qkv']['kernel']``.
Beside the arrays, ``model.json`` describes the model (``livt_jax.description``);
exports written without it still load (the kind is then read from the names,
an MAE has ``decoder_embed``, and shapes from orbax's metadata). ``save_params_export`` and
``load_params_export`` (in ``livt_jax.checkpoint``, no torch) write and read it.

Command line (``livt-convert``; ``.safetensors`` needs no torch, ``.pth`` the ``torch`` extra)
-----------------------------------------------------------------------------------------
::

  livt-convert to-jax SRC.pth|SRC.safetensors DST_DIR \\
      [--kind vit|mae] [--variant B --img-size 224 --in-chans 3 --num-classes 1000 ...] \\
      [--reorder-inat-head] [--unsafe-load] [--force]
  livt-convert to-torch SRC_DIR DST.pth|DST.safetensors [--wrap-model] \\
      [--img-size N (MAE only)] [--force]

``python -m livt_jax.convert`` is the same command.

``to-jax`` reads a LiVT/MAE release file (``{'model': state_dict, ...}``), a bare
timm state dict, or a ``.safetensors`` file. ``--kind`` defaults to ``mae`` when
decoder keys are present, else ``vit``. With a target model (``--variant`` or
``--embed-dim/--depth/--num-heads``) every converted array is checked against
the shapes of that model; the first mismatching key is named. Unexpected and
missing keys are listed, never silently dropped.

With a description, ``to-torch`` writes it beside the file as timm's
``config.json`` (architecture, num_classes, global_pool, pretrained_cfg with
input size, interpolation, crop and mean/std, model_args, label_names; ours
whole under ``livt``), and ``to-jax`` reads a ``config.json`` beside its
source back: no target options are needed, and options that contradict it are
an error. Without one, ``--in-chans`` gives a 1-channel model's input.

``to-torch`` writes timm names, so ``timm.create_model('vit_base_patch16_224',
global_pool='avg', num_classes=C)`` (or an equally configured
``timm.models.vision_transformer.VisionTransformer``) loads the file with
``strict=True``.

Safe loading: ``.pth`` files are read with ``torch.load(weights_only=True)``;
only tensors, plain containers and ``argparse.Namespace`` (the release's
``args`` entry) are allowed. Anything else is refused unless ``--unsafe-load``
is given, which runs a full (code-executing) pickle load.
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from livt_jax import description, paths
from livt_jax.checkpoint import load_params_export, save_params_export
KINDS = ("vit", "mae")
PTH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
# Keys under which release / timm training checkpoints keep the state dict.
WRAPPER_KEYS = ("model", "state_dict")


# --------------------------------------------------------------------------
# Core (no torch): params exports, iNat class order, target shapes.
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
    """``(from_timm, to_timm)`` functions of ``livt_jax.models.timm_convert`` for ``kind``."""
    from livt_jax.models import timm_convert

    if kind == "vit":
        return timm_convert.vit_params_from_timm, timm_convert.timm_state_dict_from_vit_params
    if kind == "mae":
        return timm_convert.mae_params_from_timm, timm_convert.timm_state_dict_from_mae_params
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


# --------------------------------------------------------------------------
# Files: .safetensors through safetensors' numpy API (no torch), .pth through torch.
# --------------------------------------------------------------------------


class UnsafeCheckpointError(ValueError):
    """A ``.pth`` file holds pickled objects outside the allow-list."""


# safetensors dtype names -> numpy dtypes; BF16 is ml_dtypes' bfloat16 (numpy has none).
SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": jnp.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}


def _file_format(path: str) -> str:
    """``'pth'`` or ``'safetensors'`` from the file name; raises on anything else."""
    if path.endswith(SAFETENSORS_SUFFIX):
        return "safetensors"
    if path.endswith(PTH_SUFFIXES):
        return "pth"
    raise ValueError(
        f"Cannot tell the format of {path!r}: expected a name ending in "
        f"{SAFETENSORS_SUFFIX} or one of {PTH_SUFFIXES}."
    )


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """A ``.safetensors`` file as numpy arrays, bfloat16 included (no torch).

    ``safetensors.numpy.load_file`` refuses BF16 tensors, hence the table.
    Raises CorruptCheckpointError when the file is not a valid ``.safetensors``.
    """
    import safetensors

    try:
        views = safetensors.deserialize(paths.read_bytes(path, "a .safetensors file"))
    except safetensors.SafetensorError as e:
        raise CorruptCheckpointError(
            f"{path!r} is not a valid .safetensors file ({e}); the file is corrupt or of "
            "another kind.") from None
    arrays = {}
    for name, view in views:
        if view["dtype"] not in SAFETENSORS_DTYPES:
            raise ValueError(f"{path!r}: tensor {name!r} has dtype {view['dtype']}; expected one "
                             f"of {sorted(SAFETENSORS_DTYPES)}.")
        dtype = SAFETENSORS_DTYPES[view["dtype"]]
        arrays[name] = np.frombuffer(view["data"], dtype=dtype).reshape(view["shape"])
    return arrays


def _import_torch():
    """The torch module, or an ImportError saying how to get it (only ``.pth`` needs it)."""
    try:
        import torch
    except ModuleNotFoundError as e:
        raise ImportError(
            ".pth files need PyTorch, which is not installed: `pip install 'livt-jax[torch]'`, "
            "or use a .safetensors file, which needs no torch."
        ) from e
    return torch


def _torch_load(path: str, unsafe: bool) -> Any:
    """``torch.load`` with the weights-only unpickler (or a full one if ``unsafe``)."""
    torch = _import_torch()

    data = paths.read_bytes(path, "a PyTorch checkpoint")
    if unsafe:
        print(
            f"WARNING: --unsafe-load: fully unpickling {path!r}. This runs any code the file "
            "contains; use it only for files you trust.",
            file=sys.stderr,
        )
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    _check_torch_magic(path, data[:8])
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln or "GLOBAL" in ln]
        if not lines:  # a broken pickle stream, not a disallowed object
            raise CorruptCheckpointError(_corrupt_message(path, e)) from None
        raise UnsafeCheckpointError(
            f"Refusing to load {path!r}: it holds pickled objects outside the allow-list "
            f"(tensors, containers, argparse.Namespace). torch says: {lines[0]} "
            "Pass --unsafe-load only if you trust the file."
        ) from None
    except (RuntimeError, KeyError, EOFError, ValueError, OSError) as e:
        raise CorruptCheckpointError(_corrupt_message(path, e)) from None


class CorruptCheckpointError(ValueError):
    """A checkpoint file that is truncated, garbled or of another kind."""


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format
_PICKLE_PROTOCOL = b"\x80"  # legacy torch.save: a pickle stream, protocol >= 2


def _check_torch_magic(path: str, head: bytes) -> None:
    """Raises CorruptCheckpointError unless the file (first bytes ``head``) starts
    like a torch.save output."""
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTOCOL)):
        raise CorruptCheckpointError(
            f"{path!r} is not a PyTorch checkpoint: it is neither a zip archive nor a pickle "
            f"(it starts with {head!r}); the file is corrupt or of another kind.")


def _corrupt_message(path: str, error: BaseException) -> str:
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    detail = lines[-1] if lines else type(error).__name__
    return (f"{path!r} is corrupt or truncated: torch could not read it "
            f"({type(error).__name__}: {detail[:200]}).")


def _unwrap(checkpoint: Any, path: str) -> Mapping[str, Any]:
    """The state dict inside a release checkpoint (``{'model': sd, ...}``) or the dict itself."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path!r} holds a {type(checkpoint).__name__}, not a state dict.")
    for key in WRAPPER_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def _read_pth(path: str, unsafe: bool) -> dict[str, np.ndarray]:
    """The state dict of a ``.pth`` (release wrapper or bare) as numpy arrays (needs torch)."""
    torch = _import_torch()

    arrays = {}
    for name, value in _unwrap(_torch_load(path, unsafe), path).items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"State dict entry {name!r} is a {type(value).__name__}, not a tensor.")
        value = value.detach().cpu()
        arrays[name] = (value.float() if value.is_floating_point() else value).numpy()
    return arrays


def _float32(array: np.ndarray) -> np.ndarray:
    """Floating arrays (bfloat16 included) as float32, our params dtype; others unchanged."""
    return array.astype(np.float32) if jnp.issubdtype(array.dtype, jnp.floating) else array


def load_torch_state_dict(path: str, *, unsafe: bool = False) -> dict[str, np.ndarray]:
    """Reads a ``.pth`` (release wrapper or bare) or ``.safetensors`` file as numpy arrays.

    Floating tensors come back as float32. ``.safetensors`` needs no torch.
    """
    if not paths.is_file(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}.")
    if _file_format(path) == "safetensors":
        state_dict = _read_safetensors(path)
    else:
        state_dict = _read_pth(path, unsafe)
    return {name: _float32(value) for name, value in state_dict.items()}


def save_torch_state_dict(
    path: str, state_dict: Mapping[str, np.ndarray], *, wrap_model: bool = False
) -> None:
    """Writes numpy arrays to ``.safetensors`` (no torch) or as torch tensors to ``.pth``.

    ``wrap_model=True`` writes ``{'model': state_dict}`` (the release layout) to a ``.pth``.
    """
    arrays = {name: np.ascontiguousarray(value) for name, value in state_dict.items()}
    if _file_format(path) == "safetensors":
        if wrap_model:
            raise ValueError("--wrap-model applies to .pth files only.")
        from safetensors.numpy import save

        paths.write_bytes(path, save(arrays))
        return
    torch = _import_torch()

    tensors = {name: torch.from_numpy(value) for name, value in arrays.items()}
    buffer = io.BytesIO()
    torch.save({"model": tensors} if wrap_model else tensors, buffer)
    paths.write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------


# Target options whose default applies when neither they nor a description give a value.
TARGET_DEFAULTS = {"img_size": 224, "in_chans": 3, "num_classes": 1000, "global_pool": "avg",
                   "decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16}


def _given(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """The model fields set by target options on the command line (``--variant`` as its dims)."""
    from livt_jax.models.vit import vit_kwargs

    given = vit_kwargs(args.variant) if args.variant else {}
    names = ["embed_dim", "depth", "num_heads", "patch_size", "img_size", "in_chans"]
    names += ["num_classes", "global_pool"] if kind == "vit" else list(description.DECODER)
    given.update({k: getattr(args, k) for k in names if getattr(args, k) is not None})
    return given


def _target_kwargs(args: argparse.Namespace, kind: str, described: dict | None = None
                   ) -> dict[str, Any] | None:
    """Model fields of the target: the description's (``described``, from
    ``description.model_kwargs``), which the options given must agree with, else
    the options', or None when neither gives a model."""
    given = _given(args, kind)
    if described is not None:
        differing = {k: (v, described[k]) for k, v in given.items()
                     if k in described and described[k] != v}
        if differing:
            raise ValueError("; ".join(f"--{k.replace('_', '-')} {v!r} but the description "
                                       f"says {d!r}" for k, (v, d) in differing.items())
                             + " (drop the option, or the config.json beside the file)")
        return described
    dims = ("embed_dim", "depth", "num_heads")
    if not any(k in given for k in dims):
        return None
    missing = [f"--{k.replace('_', '-')}" for k in dims if k not in given]
    if missing:
        raise ValueError(f"Without --variant the target needs {', '.join(missing)}.")
    kwargs = {"patch_size": 16, **given}
    other_kind = description.DECODER if kind == "vit" else ("num_classes", "global_pool")
    kwargs.update({k: v for k, v in TARGET_DEFAULTS.items()
                   if k not in kwargs and k not in other_kind})
    return kwargs


def _check_destination(path: str, force: bool) -> None:
    """Refuses to replace an existing local file or directory unless ``force``."""
    if not force and paths.exists(path):
        raise FileExistsError(f"{path!r} exists; pass --force to replace it.")


def to_jax(args: argparse.Namespace) -> None:
    """``to-jax`` subcommand: torch checkpoint -> params export."""
    _check_destination(args.dst, args.force)
    state_dict = load_torch_state_dict(args.src, unsafe=args.unsafe_load)
    kind = args.kind or detect_kind(state_dict)
    found = description.read_timm_config(args.src, kind)
    target = _target_kwargs(args, kind,
                            None if found is None else description.model_kwargs(found))
    expected = None if target is None else model_shapes(kind, **target)
    kind, params = params_from_state_dict(state_dict, kind, expected)
    if args.reorder_inat_head:
        params = reorder_inat_head(params)
    save_params_export(args.dst, params, force=args.force)
    if found is not None:
        description.write(args.dst, found)
    checked = "unchecked (no target model given)" if target is None else f"checked against {target}"
    described = "" if found is None else f", described by {description.timm_config_path(args.src)}"
    print(
        f"Wrote {kind} params ({len(state_dict)} tensors, shapes {checked}) "
        f"to {paths.resolve(args.dst)}{described}"
    )


def to_torch(args: argparse.Namespace) -> None:
    """``to-torch`` subcommand: params export -> timm-named ``.pth`` / ``.safetensors``."""
    _check_destination(args.dst, args.force)
    params = load_params_export(args.src)
    found = description.read(args.src)
    if found is not None:
        _check_destination(description.timm_config_path(args.dst), args.force)
    img_size = args.img_size or (found["model"]["img_size"] if found else None)
    state_dict = state_dict_from_params(params, img_size)
    save_torch_state_dict(args.dst, state_dict, wrap_model=args.wrap_model)
    beside = "" if found is None else f" and {description.write_timm_config(args.dst, found)}"
    print(f"Wrote {detect_kind(params)} state dict ({len(state_dict)} tensors) to "
          f"{args.dst}{beside}")


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    """Options describing the model the converted params must fit."""
    from livt_jax.models.vit import VARIANTS

    group = parser.add_argument_group(
        "target model (shape check; give --variant or --embed-dim/--depth/--num-heads)"
    )
    group.add_argument("--variant", choices=tuple(VARIANTS))
    group.add_argument("--embed-dim", type=int)
    group.add_argument("--depth", type=int)
    group.add_argument("--num-heads", type=int)
    group.add_argument("--patch-size", type=int, help="default: the variant's (16 or 14)")
    group.add_argument("--img-size", type=int, help="default 224")
    group.add_argument("--in-chans", type=int, help="input channels, 1 or 3 (default 3)")
    group.add_argument("--num-classes", type=int, help="ViT only (default 1000)")
    group.add_argument("--global-pool", choices=("avg", "token"), help="ViT only (default avg)")
    group.add_argument("--decoder-embed-dim", type=int, help="MAE only (default 512)")
    group.add_argument("--decoder-depth", type=int, help="MAE only (default 8)")
    group.add_argument("--decoder-num-heads", type=int, help="MAE only (default 16)")


def build_parser() -> argparse.ArgumentParser:
    """The ``livt-convert`` (= ``python -m livt_jax.convert``) argument parser."""
    parser = argparse.ArgumentParser(
        prog="livt-convert",
        description="Convert LiVT/MAE/timm PyTorch checkpoints to and from livt-jax "
        "params exports (also run as `python -m livt_jax.convert`). .safetensors files "
        "need no torch; .pth files need the torch extra.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    jax_p = sub.add_parser("to-jax", help="torch .pth/.safetensors -> orbax params export")
    jax_p.add_argument("src", help="a .pth ({'model': sd, ...} or bare) or .safetensors file")
    jax_p.add_argument("dst", help="export directory to create")
    jax_p.add_argument("--kind", choices=KINDS, help="default: mae if decoder keys exist, else vit")
    jax_p.add_argument(
        "--reorder-inat-head",
        action="store_true",
        help="permute head outputs from the iNat18 release's string-sorted class "
        "order ('0','1','10',...) to numeric labels (see inat_lexicographic_order)",
    )
    jax_p.add_argument(
        "--unsafe-load",
        action="store_true",
        help="full pickle load (runs code in the file); only for trusted files",
    )
    jax_p.add_argument("--force", action="store_true", help="replace an existing export")
    _add_target_options(jax_p)
    jax_p.set_defaults(func=to_jax)

    torch_p = sub.add_parser("to-torch", help="orbax params export -> timm-named .pth/.safetensors")
    torch_p.add_argument("src", help="params export directory")
    torch_p.add_argument("dst", help="output file ending in .pth or .safetensors")
    torch_p.add_argument("--wrap-model", action="store_true", help="write {'model': state_dict}")
    torch_p.add_argument("--img-size", type=int, help="MAE exports only: the MGP resolution")
    torch_p.add_argument("--force", action="store_true", help="replace an existing file")
    torch_p.set_defaults(func=to_torch)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the converter; returns 0, or prints the error and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, KeyError, ImportError, FileNotFoundError, FileExistsError) as e:
        # KeyError's str() adds quotes around the message; print the message itself.
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
