"""ImageNet-LT (1000 classes, 115,846 train images) from the standard split lists.

Usage: `--config configs/imagenet_lt.py[:384|:small] --workdir DIR
--config.data.data_dir=/path/to/imagenet` with ImageNet_LT_{train,test}.txt
under the image root (or give full paths in data.train_split / data.eval_split).
Faster: build a cache once (`python -m livt_jax.tools.cache ...`) and use data.source=cache.

The values are the release's logged runs (LiVT repo, exp/). Sources:
"log" = the run's log.txt lr trace (the logged train_lr is the head's lr; its
epoch-0 mean gives the steps per epoch, hence the global batch), "args" = the
args.txt beside it, "README" = the README's hyper-parameter table.
- `""` (224): BFT exp/finetune/ImageNet-LT/vit_base_224 (best epoch 60.87, the
  README's 60.9). Its args.txt (batch 2048, lr 8e-3) belongs to another run.
- `:384`: BFT exp/finetune/ImageNet-LT/vit_base_384 (best epoch 63.54).
- MGP: exp/pretrain/ImageNet-LT/vit_base_224 (its args.txt says 400 epochs at 4096).
The README table's values (warmup 10, b2 0.99, batch 1024, layer decay 0.75)
are overrides. `:small` gives a laptop-sized ViT-Ti run at 128 px.
"""

from livt_jax import config_lib


def get_config(arg: str = ""):
    if arg not in ("", "384", "small"):
        raise ValueError(f"configs/imagenet_lt.py takes '', '384' or 'small', got {arg!r}")
    c = config_lib.base_config()
    c.data.update(dict(source="split_list", name="imagenet_lt",
                       train_split="ImageNet_LT_train.txt", eval_split="ImageNet_LT_test.txt",
                       image_size=224, mean=(0.4797, 0.4577, 0.4077),
                       std=(0.2790, 0.2712, 0.2861)))
    # MGP
    c.pretrain.epochs = 800.0  # log: 800 epochs (args.txt: 400)
    c.pretrain.batch_size = 1024  # log: 113 steps/epoch, peak lr 6e-4 (args.txt: 4096)
    c.pretrain.optim.blr = 1.5e-4  # log: 6e-4 = blr x 1024 / 256; args
    c.pretrain.optim.warmup_epochs = 40.0  # log: linear rise to epoch 40; args
    c.pretrain.image_size = 224  # args: input_size 224
    # BFT
    c.finetune.epochs = 100.0  # log: 100 epochs
    c.finetune.batch_size = 512  # log: 226 steps/epoch, peak lr 1e-3
    c.finetune.optim.blr = 5e-4  # log: 1e-3 = blr x 512 / 256
    c.finetune.optim.warmup_epochs = 5.0  # log: peak at epoch 5
    c.finetune.optim.layer_decay = 0.75  # args (the log does not record it)
    c.finetune.label_smoothing = 0.1  # args
    c.finetune.drop_path = 0.1  # args
    if arg == "384":
        c.data.image_size = 384  # args: input_size 384; MGP stays the 224 model (README)
        c.finetune.batch_size = 1024  # log: 113 steps/epoch, peak lr 2e-3
        c.finetune.optim.blr = 5e-4  # log: 2e-3 = blr x 1024 / 256; args: blr 5e-4
        c.finetune.optim.layer_decay = 0.65  # args
    elif arg == "small":
        c.model.update(dict(variant="Ti", decoder_embed_dim=256, decoder_depth=4,
                            decoder_num_heads=8))
        c.data.image_size = 128
        c.pretrain.update(dict(epochs=100, batch_size=256, image_size=0))
        c.finetune.update(dict(epochs=30, batch_size=256))
    return c
