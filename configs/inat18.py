"""iNaturalist 2018 (8,142 classes, 437,513 train images) from the split lists.

MGP at 128 px, BFT at 224 (the position embeddings are resized bicubically
at the hand-over), layer decay 0.65, no label smoothing (SPEC §3).
Usage: `--config configs/inat18.py --config.data.data_dir=/path/to/inat18`.
Class labels are the split-list integers; the release's heads order classes
lexicographically by folder name (see `python -m livt_jax.convert --help`).
"""

from livt_jax import config_lib


def get_config(arg: str = ""):
    c = config_lib.base_config()
    c.data.update(dict(source="split_list", name="inat18",
                       train_split="iNaturalist18_train.txt", eval_split="iNaturalist18_val.txt",
                       image_size=224, mean=(0.466, 0.471, 0.380), std=(0.195, 0.194, 0.192)))
    c.pretrain.image_size = 128
    c.finetune.optim.update(dict(layer_decay=0.65))
    c.finetune.label_smoothing = 0.0
    if arg == "small":
        c.model.update(dict(variant="Ti", decoder_embed_dim=256, decoder_depth=4,
                            decoder_num_heads=8))
        c.pretrain.update(dict(epochs=100, batch_size=256, image_size=64))
        c.finetune.update(dict(epochs=30, batch_size=256, image_size=128))
    return c
