"""Places-LT (365 classes, 62,500 train images) from the split lists.

Usage: `--config configs/places_lt.py --config.data.data_dir=/path/to/places365`.

The release has no Places-LT log or args.txt: every value below comes from
the README's hyper-parameter table ("README"; LiVT repo assets/hyper.png),
except label smoothing, which the table does not list and which is the
release's default (util/trainer.py, "trainer"). ImageNet normalisation.
"""

from livt_jax import config_lib


def get_config(arg: str = ""):
    if arg not in ("", "small"):
        raise ValueError(f"configs/places_lt.py takes '' or 'small', got {arg!r}")
    c = config_lib.base_config()
    c.data.update(dict(source="split_list", name="places_lt",
                       train_split="Places_LT_train.txt", eval_split="Places_LT_test.txt",
                       image_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)))
    # MGP
    c.pretrain.epochs = 800.0  # README
    c.pretrain.batch_size = 4096  # README (effective batch)
    c.pretrain.optim.blr = 1.5e-4  # README
    c.pretrain.optim.warmup_epochs = 40.0  # README
    c.pretrain.image_size = 224  # README
    # BFT
    c.finetune.epochs = 30.0  # README
    c.finetune.batch_size = 1024  # README (effective batch)
    c.finetune.optim.blr = 1e-3  # README ("learning rate", the base lr per 256)
    c.finetune.optim.warmup_epochs = 5.0  # README
    c.finetune.optim.b2 = 0.99  # README: AdamW(0.9, 0.99)
    c.finetune.optim.layer_decay = 0.75  # README
    c.finetune.drop_path = 0.1  # README
    c.finetune.tau = 1.05  # README
    c.finetune.label_smoothing = 0.1  # trainer (not in the README table)
    if arg == "small":
        c.model.update(dict(variant="Ti", decoder_embed_dim=256, decoder_depth=4,
                            decoder_num_heads=8))
        c.data.image_size = 128
        c.pretrain.update(dict(epochs=100, batch_size=256, image_size=0))
        c.finetune.update(dict(batch_size=256))
    return c
