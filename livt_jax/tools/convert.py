"""Convert LiVT / MAE / timm PyTorch checkpoints to and from livt-jax params exports.

Params export layout
--------------------
A *params export* is a directory written by ``orbax.checkpoint.StandardCheckpointer``
holding the single pytree ``{'params': params}``, where ``params`` is the flax
parameter tree of a ``VisionTransformer`` (ViT classifier, BFT) or a
``MaskedAutoencoder`` (MGP), e.g. ``params['blocks_0']['attn']['qkv']['kernel']``.
Nothing else is stored: the kind is read from the names (an MAE has
``decoder_embed``), shapes from orbax's metadata. ``save_params_export`` and
``load_params_export`` (in ``livt_jax.checkpoint``, no torch) write and read it.

Command line (``livt-convert``; ``.safetensors`` needs no torch, ``.pth`` the ``torch`` extra)
-----------------------------------------------------------------------------------------
::

  livt-convert to-jax SRC.pth|SRC.safetensors DST_DIR \\
      [--kind vit|mae] [--variant B --img-size 224 --num-classes 1000 ...] \\
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

from livt_jax import paths
from livt_jax.checkpoint import load_params_export, save_params_export
from livt_jax.models.timm_convert import (KINDS, detect_kind, model_shapes, params_from_state_dict,
                                          reorder_inat_head, state_dict_from_params)
from livt_jax.state_dict_files import load_torch_state_dict, save_torch_state_dict


def _target_kwargs(args: argparse.Namespace, kind: str) -> dict[str, Any] | None:
    """Model fields of the requested target, or None when no target was given."""
    from livt_jax.models.vit import vit_kwargs

    dims = {"embed_dim": args.embed_dim, "depth": args.depth, "num_heads": args.num_heads}
    if args.variant is None and all(v is None for v in dims.values()):
        return None
    kwargs = vit_kwargs(args.variant) if args.variant else {"patch_size": 16}
    kwargs.update({k: v for k, v in dims.items() if v is not None})
    missing = [f"--{k.replace('_', '-')}" for k in dims if k not in kwargs]
    if missing:
        raise ValueError(f"Without --variant the target needs {', '.join(missing)}.")
    kwargs["img_size"] = args.img_size
    if args.patch_size is not None:
        kwargs["patch_size"] = args.patch_size
    if kind == "vit":
        kwargs.update(num_classes=args.num_classes, global_pool=args.global_pool)
    else:
        kwargs.update(
            decoder_embed_dim=args.decoder_embed_dim,
            decoder_depth=args.decoder_depth,
            decoder_num_heads=args.decoder_num_heads,
        )
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
    target = _target_kwargs(args, kind)
    expected = None if target is None else model_shapes(kind, **target)
    kind, params = params_from_state_dict(state_dict, kind, expected)
    if args.reorder_inat_head:
        params = reorder_inat_head(params)
    save_params_export(args.dst, params, force=args.force)
    checked = "unchecked (no target model given)" if target is None else f"checked against {target}"
    print(
        f"Wrote {kind} params ({len(state_dict)} tensors, shapes {checked}) "
        f"to {paths.resolve(args.dst)}"
    )


def to_torch(args: argparse.Namespace) -> None:
    """``to-torch`` subcommand: params export -> timm-named ``.pth`` / ``.safetensors``."""
    _check_destination(args.dst, args.force)
    params = load_params_export(args.src)
    state_dict = state_dict_from_params(params, args.img_size)
    save_torch_state_dict(args.dst, state_dict, wrap_model=args.wrap_model)
    print(f"Wrote {detect_kind(params)} state dict ({len(state_dict)} tensors) to {args.dst}")


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
    group.add_argument("--img-size", type=int, default=224)
    group.add_argument("--num-classes", type=int, default=1000, help="ViT only")
    group.add_argument("--global-pool", choices=("avg", "token"), default="avg", help="ViT only")
    group.add_argument("--decoder-embed-dim", type=int, default=512, help="MAE only")
    group.add_argument("--decoder-depth", type=int, default=8, help="MAE only")
    group.add_argument("--decoder-num-heads", type=int, default=16, help="MAE only")


def build_parser() -> argparse.ArgumentParser:
    """The ``livt-convert`` (= ``python -m livt_jax.tools.convert``) argument parser."""
    parser = argparse.ArgumentParser(
        prog="livt-convert",
        description="Convert LiVT/MAE/timm PyTorch checkpoints to and from livt-jax "
        "params exports (also run as `python -m livt_jax.tools.convert`). .safetensors files "
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
