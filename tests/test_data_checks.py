"""Data validated when a source opens (labels in range, classes not emptied by subsampling,
undecodable images stopped or skipped), and a cache built atomically with a manifest."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

from livt_jax.data import pipeline
from livt_jax.tools import cache
from livt_jax.data.sources import CacheSource, SplitListSource
from tests.helpers.common import data_config, snapshot


def lists_config(folder, **overrides):
    return data_config(data_dir=str(folder / "images"), train_split=str(folder / "train.txt"),
                       eval_split=str(folder / "test.txt"), **overrides)


def append(path, line):
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def truncate_half(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])





# ----------------------------------------------------------------------------- labels


def test_label_out_of_range_in_the_train_list_names_file_and_line(image_folder):
    folder, _ = image_folder
    append(folder / "train.txt", "class 1/img1.png 999")  # after 6 records and a blank line: line 8
    with pytest.raises(ValueError, match=r"996 of 1000 classes \(3-998\) have no training images.*"
                                         r"largest label 999 at .*train.txt:8.*data.num_classes"):
        pipeline.load_sources(lists_config(folder))


def test_label_out_of_range_in_the_eval_list_names_file_and_line(image_folder):
    folder, _ = image_folder
    append(folder / "test.txt", "class 1/img1.png 7")
    with pytest.raises(ValueError, match=r"test.txt:4: label 7 is outside \[0, 3\)"):
        pipeline.load_sources(lists_config(folder))


def test_data_num_classes_bounds_the_labels(image_folder):
    folder, _ = image_folder
    with pytest.raises(ValueError, match=r"train.txt:3: label 2 is outside \[0, 2\)"):
        pipeline.load_sources(lists_config(folder, num_classes=2))
    train = pipeline.load_sources(lists_config(folder, num_classes=3)).train
    assert train.num_classes == 3


def test_empty_class_after_subsampling_names_classes_and_settings(image_folder):
    folder, _ = image_folder
    for _ in range(4):  # class 0 grows to 6 images: at ratio 10 class 2's target is int(0.6) = 0
        append(folder / "train.txt", "class 0/img0.png 0")
    with pytest.raises(ValueError, match=r"1 of 3 classes \(2\) have no training images after "
                                         r"long-tailed subsampling with data.imbalance_ratio=10.0, "
                                         r"data.imbalance_type='exp'.*<= 6"):
        pipeline.load_sources(lists_config(folder, imbalance_ratio=10.0))
    train = pipeline.load_sources(lists_config(folder, imbalance_ratio=3.0)).train
    assert train.class_counts.min() >= 1


def test_empty_class_stops_livt_before_mgp_trains(tmp_path):
    from configs import demo
    from livt_jax import train

    config = demo.get_config("1000")  # Animal-MNIST: 800 images in the head, tail target int(0.8) = 0
    with pytest.raises(ValueError, match=r"1 of 10 classes \(9\) have no training images after long-"
                                         r"tailed subsampling with data.imbalance_ratio=1000.0.*<= 800"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    # Nothing written but the recorded config, which a corrected rerun replaces.
    assert [names for _, _, names in os.walk(tmp_path / "run") if names] == [["config.json"]]


# ----------------------------------------------------------------------------- images


def test_undecodable_image_stops_naming_path_and_line(image_folder):
    folder, _ = image_folder
    truncate_half(folder / "images" / "class 2" / "img2.jpg")
    source = SplitListSource(str(folder / "images"), str(folder / "train.txt"), 3)
    with pytest.raises(ValueError, match=r"cannot decode image .*class 2/img2.jpg.*train.txt:3"):
        source[2]


def test_undecodable_image_skipped_with_a_count(image_folder, caplog):
    folder, _ = image_folder
    truncate_half(folder / "images" / "class 2" / "img2.jpg")
    source = SplitListSource(str(folder / "images"), str(folder / "train.txt"), 3, bad_images="skip")
    with caplog.at_level(logging.WARNING):
        record = source[2]
    assert record["label"] == 2  # class 2's other image, img5.png
    np.testing.assert_array_equal(record["image"], source[5]["image"])
    assert "skipped 1 undecodable image" in caplog.text and "img2.jpg" in caplog.text


# ----------------------------------------------------------------------------- cache


def build(folder, out):
    return cache.main(["--source", "split_list", "--data-dir", str(folder / "images"),
                       "--split", f"train={folder / 'train.txt'}", "--split", f"test={folder / 'test.txt'}",
                       "--out", str(out), "--resize-shorter", "8"])


def test_failed_rebuild_leaves_the_old_cache_as_it_was(image_folder, tmp_path, capsys):
    folder, _ = image_folder
    out = tmp_path / "caches" / "tiny"
    assert build(folder, out) == 0
    before = snapshot(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 6 and manifest["class_names"] == ["0", "1", "2"]
    assert manifest["build"]["resize_shorter"] == 8
    (folder / "train.txt").write_text("class 0/img0.png 0\nclass 1/img1.png 1\n")  # a new train split
    truncate_half(folder / "images" / "class 1" / "img7.png")  # in the test split
    assert build(folder, out) == 1
    err = capsys.readouterr().err
    assert "class 1/img7.png" in err and "test.txt:2" in err and "left unchanged" in err
    assert snapshot(out) == before
    assert os.listdir(tmp_path / "caches") == ["tiny"]  # no temporary folder left behind
    assert len(CacheSource(str(out), "train")) == 6


@pytest.mark.parametrize("damage, message", [
    ("truncate_images", r"train_images.npy' is truncated or corrupt"),
    ("truncate_labels", r"train_labels.npy' is truncated or corrupt"),
    ("fewer_labels", r"train_labels.npy has 5 labels, the manifest 6"),
    ("other_labels", r"train_labels.npy does not match the manifest's checksum"),
    ("fewer_images", r"train_images.npy has shape \(5, 8, 8, 3\), the manifest \(6, 8, 8, 3\)"),
    ("no_manifest", r"manifest.json' is missing.*not a complete cache.*`livt-cache --source "),
    ("no_images", r"train_images.npy' is missing: rebuild the cache with `livt-cache --source "
                  r"split_list --data-dir DIR --split train=\S+train.txt --split test=\S+test.txt "
                  r"--resize-shorter 8 --out \S+tiny`"),
])
def test_damaged_cache_is_named_on_load(image_folder, tmp_path, damage, message):
    folder, _ = image_folder
    out = tmp_path / "caches" / "tiny"
    assert build(folder, out) == 0
    labels = np.load(out / "train_labels.npy")
    if damage.startswith("truncate"):
        truncate_half(out / f"train_{damage.split('_')[1]}.npy")
    elif damage == "fewer_labels":
        np.save(out / "train_labels.npy", labels[:5])
    elif damage == "other_labels":
        np.save(out / "train_labels.npy", labels[::-1])
    elif damage == "fewer_images":
        np.save(out / "train_images.npy", np.load(out / "train_images.npy")[:5])
    elif damage == "no_images":
        os.remove(out / "train_images.npy")
    else:
        os.remove(out / "manifest.json")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        CacheSource(str(out), "train")


def test_cache_reads_split_lists_under_the_data_dir(image_folder, tmp_path, monkeypatch):
    """`--split train=ImageNet_LT_train.txt` names a file in the image root, as configs do."""
    folder, _ = image_folder
    shutil.copy(folder / "train.txt", folder / "images" / "train_list.txt")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "caches" / "tiny"
    assert cache.main(["--source", "split_list", "--data-dir", str(folder / "images"),
                       "--split", "train=train_list.txt", "--out", str(out),
                       "--resize-shorter", "8"]) == 0
    assert len(CacheSource(str(out), "train")) == 6


def test_unknown_cache_split_names_the_cache_splits(image_folder, tmp_path):
    """A config whose split names are not the cache's (the split-list file names, say)."""
    folder, _ = image_folder
    out = tmp_path / "caches" / "tiny"
    assert build(folder, out) == 0
    with pytest.raises(FileNotFoundError, match=r"has no split 'ImageNet_LT_train.txt'; it holds "
                                                r"\['test', 'train'\] \(set data.train_split"):
        CacheSource(str(out), "ImageNet_LT_train.txt")
