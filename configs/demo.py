"""LiVT on Animal-MNIST-LT (the built-in demo data): a tiny ViT, CPU-sized.

Usage: `python -m livt_jax.main --config configs/demo.py[:IR] --workdir DIR`,
IR = imbalance ratio (default 100). 10 classes of 28×28 grayscale images;
the train split is subsampled exponentially (class 0 the head), the test
split stays balanced. MGP then BFT runs in a few minutes on 2 CPU cores.
"""

from livt_jax import config_lib


def get_config(arg: str = "100"):
    c = config_lib.base_config()
    c.data.update(dict(source="animal_mnist", name="animal_mnist", imbalance_ratio=float(arg),
                       image_size=28, in_chans=1, mean=(0.5,), std=(0.5,), sampler="instance"))
    c.model.update(dict(variant="", embed_dim=96, depth=4, num_heads=3, patch_size=4,
                        decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2))
    # MGP: short but long enough for the MAE to learn stroke structure.
    c.pretrain.update(dict(epochs=100, batch_size=128))
    c.pretrain.optim.update(dict(blr=1.5e-4 * 8, warmup_epochs=5.0))
    # BFT: the release's recipe scaled down (fewer epochs, lighter mixing).
    c.finetune.update(dict(epochs=30, batch_size=128, drop_path=0.05, label_smoothing=0.1))
    c.finetune.optim.update(dict(warmup_epochs=3.0, layer_decay=0.75))
    c.finetune.aug.update(dict(randaug_num_ops=2, randaug_magnitude=5, random_erasing_prob=0.0))
    c.finetune.mixup.update(dict(mixup_alpha=0.2, cutmix_alpha=0.0))
    c.eval.batch_size = 256
    c.checkpoint.save_every_steps = 200
    c.log_every_steps = 20
    return c
