"""iNaturalist 2018 (8,142 classes, 437,513 train images) from the split lists.

MGP at 128 px, BFT at 224 (the position embeddings are resized bicubically
at the hand-over), layer decay 0.65, no label smoothing.
Usage: `--config configs/inat18.py --config.data.data_dir=/path/to/inat18`.
Class labels are the split-list integers; the release's heads order classes
lexicographically by folder name (see `python -m livt_jax.tools.convert --help`).

The values are the release's logged runs (LiVT repo, exp/): "log" =
the run's log.txt lr trace (the head's lr; its epoch-0 mean gives the steps
per epoch), "args" = the args.txt beside it (log and args agree here).
BFT: exp/finetune/iNat18/vit_base_224; MGP: exp/pretrain/iNat18/vit_base_128.
"""

from livt_jax import config_lib


def get_config(arg: str = ""):
    if arg not in ("", "small"):
        raise ValueError(f"configs/inat18.py takes '' or 'small', got {arg!r}")
    c = config_lib.base_config()
    c.data.update(dict(source="split_list", name="inat18",
                       train_split="iNaturalist18_train.txt", eval_split="iNaturalist18_val.txt",
                       image_size=224, mean=(0.466, 0.471, 0.380), std=(0.195, 0.194, 0.192)))
    # MGP
    c.pretrain.epochs = 800.0  # log: 800 lines; args
    c.pretrain.batch_size = 3072  # log: 142 steps/epoch, peak lr 1.8e-3; args: 256 x 4 x 3
    c.pretrain.optim.blr = 1.5e-4  # log: 1.8e-3 = blr x 3072 / 256; args
    c.pretrain.optim.warmup_epochs = 40.0  # args
    c.pretrain.image_size = 128  # args: input_size 128
    # BFT
    c.finetune.epochs = 100.0  # log: 100 epochs
    c.finetune.batch_size = 2048  # log: 213 steps/epoch, peak lr 8e-3; args
    c.finetune.optim.blr = 1e-3  # log: 8e-3 = blr x 2048 / 256; args
    c.finetune.optim.warmup_epochs = 5.0  # log: peak at epoch 5; args
    c.finetune.optim.layer_decay = 0.65  # args
    c.finetune.label_smoothing = 0.0  # args
    c.finetune.drop_path = 0.1  # args (the README table says 0.2)
    if arg == "small":
        c.model.update(dict(variant="Ti", decoder_embed_dim=256, decoder_depth=4,
                            decoder_num_heads=8))
        c.pretrain.update(dict(epochs=100, batch_size=256, image_size=64))
        c.finetune.update(dict(epochs=30, batch_size=256, image_size=128))
    return c
