"""data.source='image_folder' (ROOT/<split>/<class>/<image>) on the sample in tests/data,
and the validation split held out of the training pool."""

import os
import shutil

import ml_collections
import numpy as np
import pytest
from PIL import Image

from livt_jax import config_lib
from livt_jax.data import pipeline
from livt_jax.data.sources import ArraySource, CacheSource, ImageFolderSource, SubsetSource
from livt_jax.tools import cache

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "image_folder")
# The sample: train cat 6 (one in a sub-folder), dog 4 (+ a .txt), eel 2; test 2 each.
TRAIN_FILES = {"cat": ["0.jpg", "1.png", "2.PNG", "3.jpg", "4.png", "more/5.PNG"],
               "dog": ["0.jpg", "1.png", "2.PNG", "3.jpg"], "eel": ["0.jpg", "1.png"]}


def folder_config(root=SAMPLE, **overrides):
    data = config_lib.base_config().data
    data.update(dict(source="image_folder", data_dir=root, train_split="train",
                     eval_split="test", image_size=8))
    data.update(overrides)
    return data


def test_classes_sorted_labels_and_pixels_as_decoded_by_pillow():
    source = ImageFolderSource(os.path.join(SAMPLE, "train"), in_chans=3)
    assert source.class_names == ["cat", "dog", "eel"]
    expected = [(f"{c}/{f}", i) for i, c in enumerate(TRAIN_FILES) for f in sorted(TRAIN_FILES[c])]
    assert list(zip(source.paths, source.labels.tolist())) == expected
    np.testing.assert_array_equal(source.class_counts, [6, 4, 2])
    for index, (relative, label) in enumerate(expected):
        with Image.open(os.path.join(SAMPLE, "train", relative)) as img:
            reference = np.asarray(img.convert("RGB"))
        record = source[index]
        assert record["label"] == label
        np.testing.assert_array_equal(record["image"], reference)


def test_grayscale_folder_gives_one_channel():
    source = ImageFolderSource(os.path.join(SAMPLE, "test"), in_chans=1)
    assert all(source[i]["image"].shape[-1] == 1 for i in range(len(source)))


def test_test_split_takes_the_train_classes(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(SAMPLE, root)
    shutil.rmtree(root / "test" / "dog")  # a class absent from test keeps its label
    splits = pipeline.load_sources(folder_config(str(root)))
    assert splits.test.class_names == ["cat", "dog", "eel"]
    np.testing.assert_array_equal(splits.test.class_counts, [2, 0, 2])
    (root / "test" / "fox").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "test" / "fox" / "a.png")
    with pytest.raises(ValueError, match=r"class folders \['fox'\] that the train split lacks"):
        pipeline.load_sources(folder_config(str(root)))


@pytest.mark.parametrize("layout, message", [
    ("missing", "is not a directory"),
    ("no_classes", "has no class folders"),
    ("no_images", "holds no image files"),
])
def test_bad_folders_are_named(tmp_path, layout, message):
    split = tmp_path / "train"
    if layout != "missing":
        split.mkdir()
    if layout == "no_images":
        (split / "cat").mkdir()
        (split / "cat" / "readme.txt").write_text("x")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        ImageFolderSource(str(split), in_chans=3)


def test_undecodable_image_stops_or_is_skipped(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(SAMPLE, root)
    (root / "train" / "dog" / "0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot decode image .*dog/0\.jpg"):
        ImageFolderSource(str(root / "train"), in_chans=3)[6]
    skipping = ImageFolderSource(str(root / "train"), in_chans=3, bad_images="skip")
    record = skipping[6]
    assert record["label"] == 1 and skipping.skipped == {6}


def test_long_tail_and_validation_on_the_folder():
    splits = pipeline.load_sources(folder_config(imbalance_ratio=3.0, val_per_class=1))
    # n_i = int(6 * (1/3) ** (i/2)): 6, 3, 2; one image per class to validation: cat and
    # eel have none left unused, so they give a training image; dog gives its unused one.
    np.testing.assert_array_equal(splits.train.class_counts, [5, 3, 1])
    np.testing.assert_array_equal(splits.val.class_counts, [1, 1, 1])
    assert not set(splits.train.indices) & set(splits.val.indices)


def pool_of(counts):
    labels = np.repeat(np.arange(len(counts)), counts)
    return ArraySource(np.zeros((len(labels), 2, 2, 1), np.uint8), labels,
                       [str(c) for c in range(len(counts))], "pool")


def test_heldout_validation_takes_unused_images_first():
    pool = pool_of([10, 10, 10])
    labels = pool.labels
    # train uses all of class 0, 4 of class 1, 1 of class 2
    train = np.concatenate([np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)[:4],
                            np.flatnonzero(labels == 2)[:1]])
    kept, val = pipeline.heldout_validation(pool, train, per_class=3, seed=0)
    assert np.all(np.bincount(labels[val], minlength=3) == 3)
    assert not set(kept) & set(val) and set(kept) <= set(train)
    # Classes 1 and 2 have >= 3 unused images: validation takes only those, train is intact.
    assert set(val[labels[val] > 0]).isdisjoint(train)
    np.testing.assert_array_equal(np.bincount(labels[kept], minlength=3), [7, 4, 1])
    # Deterministic in the seed, different across seeds.
    again = pipeline.heldout_validation(pool, train, per_class=3, seed=0)[1]
    other = pipeline.heldout_validation(pool, train, per_class=3, seed=1)[1]
    np.testing.assert_array_equal(val, again)
    assert not np.array_equal(val, other)


def test_heldout_validation_refuses_a_class_too_small():
    pool = pool_of([5, 3])
    with pytest.raises(ValueError, match=r"class '1' has 3 training images.*val_per_class=3"):
        pipeline.heldout_validation(pool, np.arange(8), per_class=3, seed=0)


def test_validation_split_by_name_and_exclusive_keys():
    splits = pipeline.load_sources(folder_config(val_split="test"))
    assert splits.val.class_names == ["cat", "dog", "eel"] and len(splits.val) == 6
    assert len(splits.train) == 12
    with pytest.raises(ValueError, match="not both"):
        pipeline.load_sources(folder_config(val_split="test", val_per_class=1))


def test_no_validation_by_default():
    assert pipeline.load_sources(folder_config()).val is None


def test_cache_builder_reads_image_folders(tmp_path):
    out = tmp_path / "caches" / "sample"
    assert cache.main(["--source", "image_folder", "--data-dir", SAMPLE, "--split", "train",
                       "--split", "test", "--out", str(out), "--resize-shorter", "8"]) == 0
    cached = CacheSource(str(out), "train")
    folder = ImageFolderSource(os.path.join(SAMPLE, "train"), in_chans=3)
    assert cached.class_names == folder.class_names
    np.testing.assert_array_equal(cached.labels, folder.labels)
    np.testing.assert_array_equal(cached[3]["image"], cache.cached_image(folder[3]["image"], 8))
    config = folder_config(str(tmp_path / "caches"), source="cache", name="sample",
                           val_per_class=1)
    splits = pipeline.load_sources(config)
    assert isinstance(splits.val, SubsetSource) and len(splits.test) == 6


def test_eval_loader_over_the_folder_resizes_every_size():
    data = folder_config()
    view = ml_collections.ConfigDict({"data": data, "aug": config_lib.base_config().finetune.aug})
    source = pipeline.load_sources(data).test
    batch = next(iter(pipeline.make_eval_loader(view, source, batch_size=8)))
    assert batch["image"].shape == (8, 8, 8, 3)
    np.testing.assert_array_equal(batch["mask"], [1] * 6 + [0] * 2)
