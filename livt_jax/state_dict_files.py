"""timm-named state dict files: ``.safetensors`` (numpy, no torch) and ``.pth`` (torch).

``load_torch_state_dict`` reads a release checkpoint (``{'model': state_dict, ...}``),
a bare timm state dict or a ``.safetensors`` file as float32 numpy arrays;
``save_torch_state_dict`` writes one. The params-export side (orbax) is
``livt_jax.checkpoint``'s ``save_params_export`` / ``load_params_export``.

Safe loading: ``.pth`` files are read with ``torch.load(weights_only=True)``;
only tensors, plain containers and ``argparse.Namespace`` (the release's
``args`` entry) are allowed. Anything else is refused unless ``unsafe=True``
(``livt-convert --unsafe-load``), which runs a full (code-executing) pickle load.
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

from livt_jax import paths

PTH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
# Keys under which release / timm training checkpoints keep the state dict.
WRAPPER_KEYS = ("model", "state_dict")


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
