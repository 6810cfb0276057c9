"""A tiny long-tailed tfds dataset in ArrayRecord format, built without TensorFlow:
`tiny_lt`, 3 classes of 36x40 RGB images (one colour per class), with ImageNet-LT's
split names (train: 16/8/4 images per class, validation: 3 each, test: 4 each)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

NAME = "tiny_lt"
SPLITS = {"train": (16, 8, 4), "validation": (3, 3, 3), "test": (4, 4, 4)}


class TinyLt(tfds.core.GeneratorBasedBuilder):
    """The dataset (registered as `tiny_lt` in the process that imports this)."""

    VERSION = tfds.core.Version("1.0.0")
    # No source folder to look for checksums in (tfds would look it up with
    # `importlib_resources`, which it does not declare).
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(names=["red", "green", "blue"])}))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(seed, counts)
                for seed, (split, counts) in enumerate(SPLITS.items())}

    def _generate_examples(self, seed: int, counts: tuple[int, ...]):
        rng = np.random.default_rng(seed)
        for label, count in enumerate(counts):
            for i in range(count):
                pixels = rng.integers(0, 60, (36, 40, 3), dtype=np.uint8)
                pixels[..., label] += 180
                # PIL images are PNG-encoded by PIL (arrays would need TensorFlow).
                yield f"{label}_{i}", {"image": PIL.Image.fromarray(pixels), "label": label}


def build(data_dir: str) -> str:
    """Writes the dataset under `data_dir` (a local folder); returns its version folder."""
    builder = TinyLt(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return str(builder.data_dir)
