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

``python -m livt_jax.tools.convert`` is the same command.

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

Safe loading (``livt_jax.state_dict_files``): ``.pth`` files are read with
``torch.load(weights_only=True)``; anything outside the allow-list is refused
unless ``--unsafe-load`` is given, which runs a full (code-executing) pickle load.
The key mapping is ``livt_jax.models.timm_convert``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from livt_jax import console, description, paths
from livt_jax.checkpoint import load_params_export, save_params_export
from livt_jax.models.timm_convert import (KINDS, detect_kind, model_shapes, params_from_state_dict,
                                          reorder_inat_head, state_dict_from_params)
from livt_jax.state_dict_files import load_torch_state_dict, save_torch_state_dict


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


def build_parser() -> console.ArgumentParser:
    """The ``livt-convert`` (= ``python -m livt_jax.tools.convert``) argument parser."""
    parser = console.command_parser("livt-convert", __doc__)
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
