"""Helpers several test files and the worker scripts share: a seconds-sized demo config (and
its command-line form), a small data config, structured uint8 test images, torchvision's
crop rule written plainly, a folder snapshot. No side effects."""

import math
import os

import ml_collections
import numpy as np
from PIL import Image

from livt_jax import config_lib

from configs import demo


def tiny_config(**stage_overrides):
    """Demo config shrunk to seconds: 2 blocks of width 32, 1 epoch per stage."""
    c = demo.get_config("100")
    c.model.update(dict(embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=16,
                        decoder_depth=1, decoder_num_heads=2))
    c.pretrain.update(dict(epochs=1, batch_size=64))
    c.finetune.update(dict(epochs=1, batch_size=64))
    c.eval.batch_size = 512
    c.log_every_steps = 1
    c.checkpoint.save_every_steps = 5
    for key, value in stage_overrides.items():
        section, name = key.split(".")
        c[section][name] = value
    return c


def smooth_images(n, h, w, c=3, seed=0):
    """uint8 images with structure (upsampled noise), so ops have something to act on."""
    small = np.random.default_rng(seed).integers(0, 256, (n, max(h // 4, 1), max(w // 4, 1), c), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(im.squeeze(-1) if c == 1 else im).resize((w, h), Image.BILINEAR))
                     .reshape(h, w, c) for im in small])


def torchvision_crop_box(rng, height, width, scale, ratio=(3 / 4, 4 / 3)):
    """torchvision's RandomResizedCrop.get_params, one image, written plainly."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.integers(0, height - h + 1), rng.integers(0, width - w + 1), h, w
    return None


# tiny_config as command-line overrides (for `python -m livt_jax.main` subprocesses).
TINY_MODEL_FLAGS = ["--config.model.embed_dim=32", "--config.model.depth=2",
                    "--config.model.num_heads=2", "--config.model.decoder_embed_dim=16",
                    "--config.model.decoder_depth=1", "--config.model.decoder_num_heads=2",
                    "--config.log_every_steps=1", "--config.checkpoint.save_every_steps=5"]


def data_config(**overrides):
    """config.data (every declared key) for small split-list tests, plus the stage sampler."""
    d = config_lib.base_config().data.to_dict()
    d.update(source="split_list", train_split="train", eval_split="test", image_size=16,
             mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), sampler="instance")
    d.update(overrides)
    return ml_collections.ConfigDict(d)


def snapshot(folder):
    """{path relative to folder: bytes} of every file below `folder`."""
    return {os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(folder) for name in names}
