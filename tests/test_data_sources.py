"""Sources: split lists, tfds (mocked, no TensorFlow), the cache round trip, Animal-MNIST."""

import gzip
import pickle
import sys

import numpy as np
import pytest
from PIL import Image

from livt_jax.data import animal_mnist, pipeline
from livt_jax.tools import cache
from livt_jax.data.sources import CacheSource, SplitListSource, read_split_list
from tests.helpers.common import data_config


def test_split_list_source(image_folder):
    tmp_path, arrays = image_folder
    source = SplitListSource(str(tmp_path / "images"), str(tmp_path / "train.txt"), in_chans=3)
    assert len(source) == 6 and source.num_classes == 3
    np.testing.assert_array_equal(source.class_counts, [2, 2, 2])
    for i, rel in enumerate(source.paths):
        record = source[i]
        assert record["image"].dtype == np.uint8 and record["image"].shape[-1] == 3
        assert record["label"] == int(rel.split("/")[0][-1])
        original = arrays[rel]
        if rel.endswith(".png") and original.ndim == 3:
            np.testing.assert_array_equal(record["image"], original)
        if original.ndim == 2:  # gray PNG read as RGB: three equal channels
            np.testing.assert_array_equal(record["image"], np.repeat(original[..., None], 3, -1))
    gray = SplitListSource(str(tmp_path / "images"), str(tmp_path / "train.txt"), in_chans=1)
    assert gray[0]["image"].shape[-1] == 1


def test_split_list_errors(tmp_path, image_folder):
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png 1\nb.png\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 'relative/path label'"):
        read_split_list(str(bad))
    with pytest.raises(FileNotFoundError, match="image root"):
        SplitListSource(str(tmp_path / "nowhere"), str(bad), 3)
    with pytest.raises(FileNotFoundError, match="split list 'missing.txt'"):
        pipeline.load_sources(data_config(data_dir=str(tmp_path), train_split="missing.txt"))
    with pytest.raises(ValueError, match="unknown data.source 'folder'"):
        pipeline.load_sources(data_config(source="folder", data_dir=str(tmp_path)))


def test_load_split_list_sources_relative_to_data_dir(image_folder):
    tmp_path, _ = image_folder
    (tmp_path / "images" / "train.txt").write_text((tmp_path / "train.txt").read_text())
    (tmp_path / "images" / "test.txt").write_text((tmp_path / "test.txt").read_text())
    train, test, _ = pipeline.load_sources(data_config(data_dir=str(tmp_path / "images"),
                                                    train_split="train.txt", eval_split="test.txt"))
    assert (len(train), len(test)) == (6, 2) and train.num_classes == test.num_classes == 3


def test_tfds_source_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=40):
        cfg = data_config(source="tfds", name="cifar10", imbalance_ratio=4.0, lt_seed=1)
        train, test, _ = pipeline.load_sources(cfg)
        raw = tfds.data_source("cifar10", split="train")
        full = np.array([raw[i]["label"] for i in range(len(raw))])
        assert len(test) == 40 and test.num_classes == 10
        counts = np.bincount(full, minlength=10)
        targets = [int(counts.max() * 0.25 ** (i / 9)) for i in range(10)]
        np.testing.assert_array_equal(train.class_counts, np.minimum(counts, targets))
        record = train[3]
        assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
        original = raw[int(train.indices[3])]
        np.testing.assert_array_equal(record["image"], original["image"])
        assert record["label"] == original["label"]
    assert "tensorflow" not in sys.modules


def test_cache_round_trip(image_folder, tmp_path):
    folder, arrays = image_folder
    out = tmp_path / "caches" / "tiny"
    cache.main(["--source", "split_list", "--data-dir", str(folder / "images"),
                "--split", f"train={folder / 'train.txt'}", "--split", f"test={folder / 'test.txt'}",
                "--out", str(out), "--resize-shorter", "8"])
    train = CacheSource(str(out), "train")
    listed = SplitListSource(str(folder / "images"), str(folder / "train.txt"), 3)
    assert len(train) == 6 and train.images.shape == (6, 8, 8, 3)
    np.testing.assert_array_equal(train.labels, listed.labels)
    for i in range(len(train)):
        pil = Image.open(folder / "images" / listed.paths[i]).convert("RGB")
        w, h = pil.size
        size = (8, int(8 * h / w)) if w <= h else (int(8 * w / h), 8)
        resized = np.asarray(pil.resize(size, Image.BICUBIC))
        top, left = int(round((resized.shape[0] - 8) / 2)), int(round((resized.shape[1] - 8) / 2))
        np.testing.assert_array_equal(train[i]["image"], resized[top:top + 8, left:left + 8])
    cfg = data_config(source="cache", name="tiny", data_dir=str(tmp_path / "caches"))
    loaded_train, loaded_test, _ = pipeline.load_sources(cfg)
    assert len(loaded_test) == 2 and loaded_train.class_names == ["0", "1", "2"]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(loaded_train))[5]["image"], train[5]["image"])
    with pytest.raises(FileNotFoundError, match="has no split 'val'; it holds \\['test', 'train'\\]"):
        CacheSource(str(out), "val")


# --------------------------------------------------------------------------- Animal-MNIST


def test_animal_mnist_offline_split_and_long_tail():
    pytest.importorskip("animal_mnist")
    cfg = data_config(source="animal_mnist", imbalance_ratio=100.0, in_chans=1)
    train, test, _ = pipeline.load_sources(cfg)
    assert train.num_classes == test.num_classes == 10 and len(train.class_names) == 10
    np.testing.assert_array_equal(test.class_counts, np.full(10, 200))
    expected = [int(800 * 0.01 ** (i / 9)) for i in range(10)]  # 800 train images per class
    np.testing.assert_array_equal(train.class_counts, expected)
    record = train[0]
    assert record["image"].shape == (28, 28, 1) and record["image"].dtype == np.uint8
    full_train, full_test = animal_mnist.load_animal_mnist()
    assert len(full_train) == 8000 and len(full_test) == 2000
    pixels = lambda s: {s[i]["image"].tobytes() for i in range(0, len(s), 97)}  # noqa: E731
    assert not pixels(full_train) & pixels(full_test)


def test_unpickler_accepts_arrays_only(tmp_path):
    array = np.arange(12, dtype=np.int64).reshape(3, 4)
    np.testing.assert_array_equal(animal_mnist.load_numpy_pickle(pickle.dumps(array, protocol=4)), array)
    marker = tmp_path / "ran"
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        animal_mnist.load_numpy_pickle(evil)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        animal_mnist.load_numpy_pickle(pickle.dumps(eval, protocol=4))
    with pytest.raises(pickle.UnpicklingError, match="expected a numpy array"):
        animal_mnist.load_numpy_pickle(pickle.dumps([1, 2], protocol=4))
    folder = tmp_path / "pickles"
    folder.mkdir()
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        with gzip.open(folder / name, "wb") as f:
            f.write(evil)
    with pytest.raises(pickle.UnpicklingError):
        animal_mnist.load_arrays(str(folder))
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="Animal-MNIST file"):
        animal_mnist.load_arrays(str(tmp_path))
