"""CIFAR-10-LT / CIFAR-100-LT through tfds (ArrayRecord, no TensorFlow).

Usage: `--config configs/cifar_lt.py:cifar10,100` (dataset, imbalance ratio;
defaults cifar10,100). Prepare the tfds data once on a machine with network
(`tfds build cifar10 --file_format=array_record`) and pass
`--config.data.data_dir=...` if it is not in ~/tensorflow_datasets.
Both stages train on CIFAR-LT alone at 32 px with patch 4 (LiVT's from-scratch
setting), layer decay 0.65. The authors instead fine-tuned their ImageNet-LT
MGP model at 64 px for 20 epochs: set `finetune.image_size=64`,
`finetune.init_from=<converted MGP export>`, `finetune.epochs=20`, `stage=finetune`.
Append `,small` for a laptop-sized ViT-Ti run.
"""

from livt_jax import config_lib

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def get_config(arg: str = "cifar10,100"):
    parts = arg.split(",")
    name, ratio = parts[0], float(parts[1]) if len(parts) > 1 else 100.0
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"dataset {name!r}: expected cifar10 or cifar100")
    c = config_lib.base_config()
    c.data.update(dict(source="tfds", name=name, train_split="train", eval_split="test",
                       imbalance_ratio=ratio, image_size=32, in_chans=3,
                       mean=CIFAR_MEAN, std=CIFAR_STD))
    c.model.update(dict(variant="B", patch_size=4))
    c.pretrain.update(dict(epochs=800, batch_size=1024))
    c.finetune.update(dict(epochs=100, batch_size=1024))
    c.finetune.optim.update(dict(layer_decay=0.65))
    if "small" in parts:
        c.model.update(dict(variant="Ti", decoder_embed_dim=128, decoder_depth=2,
                            decoder_num_heads=4))
        c.pretrain.update(dict(epochs=200, batch_size=256))
        c.finetune.update(dict(epochs=50, batch_size=256))
    return c
