"""The dataset configs reproduce the release's logged lr traces.

For every logged run the test builds the optimizer our trainer would build
from the config (global batch = the stage's batch_size, steps per epoch =
train size // batch as in `train.run_stage`) and compares its schedule with
the log: the peak lr, the steps per epoch, the warmup steps, and the logged
mean lr of the first two epochs. The release updates the lr once per
optimizer step at epoch fraction u / U (U steps per epoch), linearly from 0
over the warmup epochs, so epoch e's mean lr is the mean of our schedule over
steps [eU, (e+1)U); U is what the log's epoch-0 mean pins down.
Logged values: LiVT repo, exp/*/log.txt (`train_lr`, the head's lr).
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax import config_lib, optim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Training images per dataset (the standard split lists).
TRAIN_SIZE = {"imagenet_lt": 115_846, "inat18": 437_513, "places_lt": 62_500}

# (config file, arg, stage) -> what the release's run used:
# global batch, peak lr, steps per epoch, warmup epochs, logged train_lr of epochs 0 and 1.
LOGGED = {
    # exp/finetune/ImageNet-LT/vit_base_224/log.txt (best 60.874)
    ("imagenet_lt", "", "finetune"): (512, 1e-3, 226, 5, (9.955837733890909e-05,
                                                         2.99558377338909e-04)),
    # exp/finetune/ImageNet-LT/vit_base_384/log.txt (best 63.538)
    ("imagenet_lt", "384", "finetune"): (1024, 2e-3, 113, 5, (1.9823375354842879e-04,
                                                             5.982337535484254e-04)),
    # exp/pretrain/ImageNet-LT/vit_base_224/log.txt (800 epochs)
    ("imagenet_lt", "", "pretrain"): (1024, 6e-4, 113, 40, (7.433628318584069e-06,
                                                           2.2433628318584072e-05)),
    # exp/finetune/iNat18/vit_base_224/log.txt (best 76.08)
    ("inat18", "", "finetune"): (2048, 8e-3, 213, 5, (7.962592285840191e-04,
                                                    2.396259228584022e-03)),
    # exp/pretrain/iNat18/vit_base_128/log.txt (800 epochs)
    ("inat18", "", "pretrain"): (3072, 1.8e-3, 142, 40, (2.2342036255138818e-05,
                                                        6.73420362551387e-05)),
    # No log: the README table (batch 1024 / 4096, blr 1e-3 / 1.5e-4, warmup 5 / 40).
    ("places_lt", "", "finetune"): (1024, 4e-3, 61, 5, None),
    ("places_lt", "", "pretrain"): (4096, 2.4e-3, 15, 40, None),
}


def load_config(name: str, arg: str):
    path = os.path.join(ROOT, "configs", f"{name}.py")
    return config_lib.load_config_file(f"{path}:{arg}" if arg else path)


@pytest.mark.parametrize("key", list(LOGGED), ids=lambda k: "-".join(p for p in k if p))
def test_schedule_matches_the_log(key):
    name, arg, stage = key
    batch, peak, steps_per_epoch, warmup_epochs, epoch_means = LOGGED[key]
    stage_cfg = load_config(name, arg)[stage]
    assert stage_cfg.batch_size * stage_cfg.grad_accum_steps == batch
    spe = TRAIN_SIZE[name] // batch  # as train.run_stage computes it
    assert spe == steps_per_epoch
    total = int(round(stage_cfg.epochs * spe))
    params = {"head": {"kernel": jnp.zeros((2, 2))}}
    _, schedule = optim.make_optimizer(stage_cfg.optim, params, stage=stage, depth=12,
                                       global_batch=batch, steps_per_epoch=spe,
                                       total_steps=total)
    lr = np.asarray(schedule(np.arange(total + 1)), np.float64)
    warmup = int(np.argmax(lr))
    assert warmup == warmup_epochs * steps_per_epoch
    assert lr.max() == pytest.approx(peak, rel=1e-6)
    assert lr[0] == 0.0 and np.all(np.diff(lr[:warmup + 1]) > 0)
    if epoch_means is not None:
        for epoch, logged in enumerate(epoch_means):
            ours = lr[epoch * spe:(epoch + 1) * spe].mean()
            assert ours == pytest.approx(logged, rel=1e-4), (epoch, ours, logged)


def test_recipe_values():
    """The non-schedule values each config carries (the release's logs, its args.txt, README)."""
    expect = {
        # name, arg: epochs (MGP, BFT), MGP px, BFT px, layer decay, smoothing, tau, b2, drop path
        ("imagenet_lt", ""): ((800, 100), 224, 224, 0.75, 0.1, 1.0, 0.999, 0.1),
        ("imagenet_lt", "384"): ((800, 100), 224, 384, 0.65, 0.1, 1.0, 0.999, 0.1),
        ("inat18", ""): ((800, 100), 128, 224, 0.65, 0.0, 1.0, 0.999, 0.1),
        ("places_lt", ""): ((800, 30), 224, 224, 0.75, 0.1, 1.05, 0.99, 0.1),
    }
    for (name, arg), (epochs, mgp_px, bft_px, ld, ls, tau, b2, dp) in expect.items():
        c = load_config(name, arg)
        assert (c.pretrain.epochs, c.finetune.epochs) == epochs, name
        assert c.pretrain.image_size == mgp_px, name
        assert (c.finetune.image_size or c.data.image_size) == bft_px, name
        assert c.finetune.optim.layer_decay == ld and c.finetune.label_smoothing == ls, name
        assert c.finetune.tau == tau and c.finetune.optim.b2 == b2, name
        assert c.finetune.drop_path == dp, name
    with pytest.raises(ValueError, match="'nope'"):
        load_config("imagenet_lt", "nope")
