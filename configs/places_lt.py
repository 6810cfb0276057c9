"""Places-LT (365 classes, 62,500 train images) from the split lists.

README recipe: BFT 30 epochs, warmup 5, τ = 1.05, ImageNet normalisation.
Usage: `--config configs/places_lt.py --config.data.data_dir=/path/to/places365`.
"""

from livt_jax import config_lib


def get_config(arg: str = ""):
    c = config_lib.base_config()
    c.data.update(dict(source="split_list", name="places_lt",
                       train_split="Places_LT_train.txt", eval_split="Places_LT_test.txt",
                       image_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)))
    c.finetune.update(dict(epochs=30, tau=1.05))
    c.finetune.optim.warmup_epochs = 5.0
    if arg == "small":
        c.model.update(dict(variant="Ti", decoder_embed_dim=256, decoder_depth=4,
                            decoder_num_heads=8))
        c.data.image_size = 128
        c.pretrain.update(dict(epochs=100, batch_size=256))
        c.finetune.update(dict(batch_size=256))
    return c
