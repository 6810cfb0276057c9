"""ImageNet-LT (1000 classes, 115,846 train images) from the standard split lists.

Usage: `--config configs/imagenet_lt.py --workdir DIR --config.data.data_dir=/path/to/imagenet`
with ImageNet_LT_{train,test}.txt under the image root (or give full paths in
data.train_split / data.eval_split). Faster: build a cache once
(`python -m livt_jax.data.cache ...`) and use data.source=cache.
Defaults are the release's logged runs (SPEC §3); the README table's values
are overrides: `--config.finetune.optim.warmup_epochs=10 --config.finetune.optim.b2=0.99
--config.finetune.batch_size=1024 --config.finetune.optim.layer_decay=0.65`.
`:small` gives a laptop-sized ViT-Ti run at 128 px.
"""

from livt_jax import config_lib


def get_config(arg: str = ""):
    c = config_lib.base_config()
    c.data.update(dict(source="split_list", name="imagenet_lt",
                       train_split="ImageNet_LT_train.txt", eval_split="ImageNet_LT_test.txt",
                       image_size=224, mean=(0.4797, 0.4577, 0.4077),
                       std=(0.2790, 0.2712, 0.2861)))
    c.finetune.optim.update(dict(layer_decay=0.75))
    c.finetune.label_smoothing = 0.1
    if arg == "small":
        c.model.update(dict(variant="Ti", decoder_embed_dim=256, decoder_depth=4,
                            decoder_num_heads=8))
        c.data.image_size = 128
        c.pretrain.update(dict(epochs=100, batch_size=256))
        c.finetune.update(dict(epochs=30, batch_size=256))
    return c
