"""One jitted train step on a mesh of 8 fake CPU devices equals the same step on 1."""

import jax
import numpy as np
import pytest

from livt_jax import config_lib, mesh as mesh_lib, stage as stage_lib
from configs import demo


def _config():
    c = demo.get_config("100")
    c.model.update(dict(embed_dim=64, depth=2, num_heads=2, decoder_embed_dim=16,
                        decoder_depth=1, decoder_num_heads=2))
    return c


def _batch(n=16, size=28, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(n, size, size, 1)).astype(np.float32),
            "label": rng.integers(0, classes, size=n).astype(np.int32)}


def _one_step(config, stage, devices, data, fsdp, grad_accum=1, drop_path=0.1):
    mesh = mesh_lib.make_mesh(data, fsdp, devices=devices)
    counts = np.array([800, 480, 287, 172, 103, 61, 37, 22, 13, 8])
    config = config.copy_and_resolve_references()
    config[stage].update(dict(batch_size=16, grad_accum_steps=grad_accum))
    config.finetune.drop_path = drop_path
    built, state = stage_lib.build_stage(stage_lib.stage_spec(config, stage, mesh), mesh, counts,
                                         steps_per_epoch=10, total_steps=100)
    for i in range(2):
        state, metrics = built.step(state, mesh_lib.global_batch_from_local(mesh, _batch(seed=i)))
    return jax.device_get(state.params), float(metrics["loss"]), state


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["finetune", "pretrain"])
def test_eight_devices_equal_one(stage):
    config = _config()
    assert jax.device_count() == 8
    params1, loss1, _ = _one_step(config, stage, jax.devices()[:1], 1, 1)
    params8, loss8, state8 = _one_step(config, stage, jax.devices(), 4, 2)
    assert loss8 == pytest.approx(loss1, rel=1e-5)
    flat1 = jax.tree_util.tree_leaves(params1)
    flat8 = jax.tree_util.tree_leaves(params8)
    assert len(flat1) == len(flat8)
    for a, b in zip(flat1, flat8):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # Parameters are really split over the fsdp axis (not all replicated).
    specs = [leaf.sharding.spec for leaf in jax.tree_util.tree_leaves(state8.params)]
    assert any("fsdp" in tuple(s) for s in specs)


@pytest.mark.slow
def test_gradient_accumulation_equals_full_batch():
    """Without randomness in the loss (no mixup, no drop path), averaging the
    gradients of 2 micro-batches is exactly the full-batch step."""
    config = _config()
    config.finetune.mixup.update(dict(mixup_alpha=0.0, cutmix_alpha=0.0))
    full, loss_full, _ = _one_step(config, "finetune", jax.devices(), 8, 1, drop_path=0.0)
    accum, loss_accum, _ = _one_step(config, "finetune", jax.devices(), 4, 2, grad_accum=2,
                                     drop_path=0.0)
    assert loss_accum == pytest.approx(loss_full, rel=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(accum)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_batch_that_does_not_divide_devices_is_a_clear_error():
    mesh = mesh_lib.make_mesh(-1, 1)
    with pytest.raises(ValueError, match="global batch size 12 does not divide over the 8"):
        mesh_lib.check_global_batch(12, mesh)
    with pytest.raises(ValueError, match="does not match the 8 devices"):
        mesh_lib.make_mesh(3, 2)


@pytest.mark.slow
def test_checkpoint_from_eight_devices_restores_on_one(tmp_path):
    """A train state saved FSDP-sharded over 8 devices restores bit-exactly on 1."""
    from livt_jax import checkpoint
    from livt_jax.data import pipeline

    config = _config()
    _, _, state8 = _one_step(config, "finetune", jax.devices(), 4, 2)
    data_cfg = config_lib.stage_data_config(config, "finetune")
    source = pipeline.load_sources(data_cfg.data).train
    loader = pipeline.make_train_loader(data_cfg, source, batch_size=16, seed=0, num_steps=10)
    iterator = iter(loader)
    next(iterator)
    manager = checkpoint.make_manager(str(tmp_path), save_every_steps=1, keep=1, keep_best=False,
                                      async_save=False)
    checkpoint.save(manager, 2, state8, iterator, force=True)
    manager.wait_until_finished()

    one = mesh_lib.make_mesh(1, 1, devices=jax.devices()[:1])
    abstract = mesh_lib.sharded_abstract(
        state8, jax.tree_util.tree_map(lambda _: mesh_lib.replicated(one), state8))
    fresh = iter(loader)
    restored, step = checkpoint.restore_latest(manager, abstract, fresh)
    assert step == 2
    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return jax.device_get(x)

    for a, b in zip(jax.tree_util.tree_leaves(state8), jax.tree_util.tree_leaves(restored)):
        assert b.sharding.mesh.devices.size == 1
        np.testing.assert_array_equal(host(a), host(b))
    np.testing.assert_array_equal(next(fresh)["label"], next(iterator)["label"])
