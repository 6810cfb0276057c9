"""The speed benchmark: analytic FLOPs against the anchors' figures, and a CPU smoke run."""

import pytest

from configs import demo
from livt_jax import benchmark


def test_analytic_flops_match_the_anchor_figures():
    # ANCHORS.md: ViT-B/16 fine-tune 105.4 GFLOP/img, MAE-B pretrain 58.5 GFLOP/img.
    vit = benchmark.vit_train_flops(224, 16, 768, 12, 1000)
    mae = benchmark.mae_train_flops(224, 16, 768, 12, 512, 8, 0.75)
    assert vit / 1e9 == pytest.approx(105.4, rel=0.005)
    assert mae / 1e9 == pytest.approx(58.5, rel=0.01)


def test_encoder_flops_count_each_matmul():
    n, d = 10, 8
    by_hand = 2 * n * d * 3 * d + 2 * n * n * d * 2 + 2 * n * d * d + 2 * n * d * 4 * d * 2
    assert benchmark.encoder_matmul_flops(n, d, depth=1) == by_hand


def test_benchmark_runs_the_real_step_on_cpu():
    config = demo.get_config("100")
    config.model.update(dict(embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=16,
                             decoder_depth=1, decoder_num_heads=2))
    config.model.dtype = "float32"
    rows = [benchmark.benchmark_stage(config, stage, batch=16, steps=2, warmup=1)
            for stage in ("finetune", "pretrain")]
    for row in rows:
        assert row["img_s"] > 0 and row["step_ms"] > 0
        assert row["xla_flops"] > 0
    table = benchmark.format_table(rows, peak=1e12)
    assert "finetune" in table and "pretrain" in table and "img/s" in table
