"""The PyTorch reference steps the benchmarks time against (the release's path).

BFT: timm's ``VisionTransformer`` (avg pool, drop path), BCE on soft targets.
MGP: the MAE of He et al. built from timm ``Block``s (encoder on the visible
tokens, mask tokens, decoder, norm-pix MSE on the removed patches). Both
train with AdamW under bf16 autocast, eagerly (as the release does) or
through ``torch.compile``. Speed references only: the JAX models are checked
against timm numerically in the tests, these are not trained here.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from livt_jax.config_lib import stage_image_size
from livt_jax.models import factory


class MaskedAutoencoder(nn.Module):
    """MAE: ``forward(images (B, C, H, W)) -> loss`` (mean MSE over removed patches).

    Position embeddings are zeros here: they cost one add, like the sin-cos
    tables, and do not change the timing.
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, depth: int,
                 num_heads: int, decoder_embed_dim: int, decoder_depth: int,
                 decoder_num_heads: int, mask_ratio: float, mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_size, self.mask_ratio = patch_size, mask_ratio
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", torch.zeros(1, patches + 1, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer("decoder_pos_embed", torch.zeros(1, patches + 1, decoder_embed_dim))
        self.decoder_blocks = nn.Sequential(*[
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True)
            for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * in_chans)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, L, p*p*C)``, each patch ordered (row, col, channel)."""
        b, c, h, w = images.shape
        p = self.patch_size
        x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images) + self.pos_embed[:, 1:]
        b, n, d = x.shape
        keep = int(n * (1 - self.mask_ratio))
        ids_shuffle = torch.argsort(torch.rand(b, n, device=x.device), dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        x = self.decoder_embed(self.norm(self.blocks(x)))
        fill = self.mask_token.expand(b, n - keep, -1)
        patches = torch.cat([x[:, 1:], fill], dim=1)
        patches = torch.gather(patches, 1, ids_restore[:, :, None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        pred = self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))[:, 1:]
        target = self.patchify(images)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        mask = (ids_restore >= keep).float()
        per_patch = ((pred.float() - target) ** 2).mean(-1)
        return (per_patch * mask).sum() / mask.sum()


def build_model(config, stage: str) -> nn.Module:
    """The timm ViT (``finetune``) or the MAE (``pretrain``) of ``config``'s model."""
    dims = factory.model_dims(config.model)
    size = stage_image_size(config, stage)
    common = dict(img_size=size, patch_size=dims["patch_size"], in_chans=config.data.in_chans,
                  embed_dim=dims["embed_dim"], depth=dims["depth"], num_heads=dims["num_heads"],
                  mlp_ratio=config.model.mlp_ratio)
    if stage == "finetune":
        return VisionTransformer(num_classes=1000, global_pool="avg",
                                 drop_path_rate=config.finetune.drop_path, **common)
    if stage == "pretrain":
        m = config.model
        return MaskedAutoencoder(decoder_embed_dim=m.decoder_embed_dim,
                                 decoder_depth=m.decoder_depth,
                                 decoder_num_heads=m.decoder_num_heads,
                                 mask_ratio=m.mask_ratio, **common)
    raise ValueError(f"stage={stage!r}; expected 'finetune' or 'pretrain'")


def benchmark_stage(config, stage: str, batch: int, steps: int, warmup: int,
                    compile_model: bool = False) -> dict:
    """Times ``steps`` AdamW steps (bf16 autocast) after ``warmup``; CUDA if present.

    Returns ``img_s``, ``step_ms`` (median), ``mem_gib`` (peak allocated, CUDA
    only, else None) and ``loss`` (the last step's, a float).
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = build_model(config, stage).to(device)
    forward = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    size = stage_image_size(config, stage)
    images = torch.randn(batch, config.data.in_chans, size, size, device=device)
    targets = torch.softmax(torch.randn(batch, 1000, device=device), -1)

    def loss_fn() -> torch.Tensor:
        if stage == "pretrain":
            return forward(images)
        return nn.functional.binary_cross_entropy_with_logits(
            forward(images), targets, reduction="sum") / batch

    def one_step() -> torch.Tensor:
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss

    for _ in range(warmup):
        one_step()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = one_step()
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    mem = torch.cuda.max_memory_allocated() / 2 ** 30 if device == "cuda" else None
    return {"img_s": batch / seconds, "step_ms": 1e3 * seconds, "mem_gib": mem,
            "loss": float(loss.detach().float())}
