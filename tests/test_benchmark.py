"""The speed benchmark: analytic FLOPs against the anchors' figures, a CPU smoke run, and
that it times the very step the trainer runs."""

import jax
import pytest

from configs import demo
from livt_jax import mesh as mesh_lib, stage as stage_lib, train
from livt_jax.tools import benchmark
from tests.helpers.common import tiny_config

_BUILD_STAGE = stage_lib.build_stage


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


@pytest.mark.e2e
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


def _lowered_steps(monkeypatch, tmp_path, grad_accum):
    """The StableHLO text of the trainer's step and of the benchmark's step, built
    from one config (tiny BFT, `grad_accum` micro-batches), lowered on the same inputs."""
    built = []

    def recording_build(*args, **kwargs):
        stage, state = _BUILD_STAGE(*args, **kwargs)
        built.append((args, kwargs, stage, mesh_lib.sharded_abstract(state, stage.shardings)))
        return stage, state

    monkeypatch.setattr(stage_lib, "build_stage", recording_build)
    config = tiny_config(**{"finetune.grad_accum_steps": grad_accum})
    config.stage = "finetune"
    config.stop_after_steps = 1
    train.train_and_evaluate(config, str(tmp_path))
    (_, _, counts), schedule, _, _ = built[0]
    benchmark.benchmark_stage(config, "finetune", batch=config.finetune.batch_size, steps=1,
                              warmup=0, train_counts=counts, **schedule)
    assert len(built) == 2
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=mesh_lib.batch_sharding(
        built[0][2].mesh)) for k, v in benchmark.random_batch(
            config, "finetune", config.finetune.batch_size, len(counts)).items()}
    return [stage.step.lower(abstract_state, batch).as_text()
            for _, _, stage, abstract_state in built]


@pytest.mark.e2e
def test_benchmark_times_the_trainers_step(monkeypatch, tmp_path):
    trainer, bench = _lowered_steps(monkeypatch, tmp_path / "accum2", grad_accum=2)
    assert trainer == bench
    # The comparison can fail: without accumulation the program is another one.
    single, _ = _lowered_steps(monkeypatch, tmp_path / "accum1", grad_accum=1)
    assert single != trainer
