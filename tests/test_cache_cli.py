"""`livt-cache` from the command line: 16-bit images, what `--out` may be, swapped files.

A refused `--out` ends with one line and exit status 2 and leaves every file as it
was; a cache file swapped for another cache's file of the same shape is named when
the cache is opened.
"""

import logging
import os
import re
import shutil
import struct
import zlib

import numpy as np
import pytest

from tests.helpers import procs
from PIL import Image

from livt_jax.data import cache_manifest
from livt_jax.data.sources import CacheSource, SplitListSource, decode_image
from tests.helpers.common import snapshot



def build_args(folder, out, *extra):
    return ("--source", "split_list", "--data-dir", folder / "images",
            "--split", f"train={folder / 'train.txt'}", "--split", f"test={folder / 'test.txt'}",
            "--out", out, "--resize-shorter", "8", *extra)


# ----------------------------------------------------------------------------- 16-bit images

def write_png16(path, array):
    """A 16-bit PNG written from the format's definition (not by Pillow): gray (H, W),
    RGB (H, W, 3) or RGBA (H, W, 4) uint16."""
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    rows = array.astype(">u2").reshape(height, width * channels)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter 0 per row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, {1: 0, 3: 2, 4: 6}[channels], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def dark16(shape, seed):
    """uint16 values spread over 0..4095 and a few bright ones: all 255 if clipped."""
    values = np.random.default_rng(seed).integers(0, 4096, shape, dtype=np.uint16)
    values.flat[:3] = (0, 255, 65535)
    return values


def expected8(values):
    """The reference: the high byte of each 16-bit value."""
    return (values >> 8).astype(np.uint8)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_png_decodes_to_its_high_byte(tmp_path, channels):
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    values = dark16(shape, channels)
    write_png16(tmp_path / "x.png", values)
    rgb = decode_image(str(tmp_path / "x.png"), 3)
    want = expected8(values)
    want = np.repeat(want[..., None], 3, -1) if channels == 1 else want[..., :3]
    np.testing.assert_array_equal(rgb, want)
    if channels == 1:
        np.testing.assert_array_equal(decode_image(str(tmp_path / "x.png"), 1)[..., 0], want[..., 0])


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_16_bit_modes_decode_to_their_high_byte(tmp_path, mode):
    values = dark16((4, 6), 0)
    image = (Image.frombytes("I;16B", (6, 4), values.astype(">u2").tobytes()) if mode == "I;16B"
             else Image.fromarray(values.astype(np.int32)))
    image.save(tmp_path / "x.tif")
    assert Image.open(tmp_path / "x.tif").mode == mode
    np.testing.assert_array_equal(decode_image(str(tmp_path / "x.tif"), 1)[..., 0], expected8(values))


def test_32_bit_values_are_refused_naming_the_range(tmp_path):
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(tmp_path / "x.tif")
    with pytest.raises(ValueError, match=r"I image with values in \[0, 70000\]; expected 8-bit or 16-bit"):
        decode_image(str(tmp_path / "x.tif"), 1)


@pytest.mark.e2e
@pytest.mark.parametrize("source", ["split_list", "image_folder"])
def test_cache_of_16_bit_pngs_holds_their_high_bytes(tmp_path, source):
    """Both image-file sources (and so training and the cache builder) decode alike."""
    arrays = [dark16((6, 6), seed) for seed in range(4)]
    for i, values in enumerate(arrays):  # images/train/<class>/<i>.png: both layouts at once
        (tmp_path / "images" / "train" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        write_png16(tmp_path / "images" / "train" / f"c{i % 2}" / f"{i}.png", values)
    (tmp_path / "train.txt").write_text("".join(f"train/c{i % 2}/{i}.png {i % 2}\n" for i in range(4)))
    what = f"train={tmp_path / 'train.txt'}" if source == "split_list" else "train"
    result = procs.run_module("livt_jax.tools.cache", "--source", source, "--data-dir", tmp_path / "images",
                     "--split", what, "--out", tmp_path / "cache", "--resize-shorter", "0",
                     "--in-chans", "1")
    assert result.returncode == 0, result.stderr
    cached = CacheSource(str(tmp_path / "cache"), "train")
    order = [0, 2, 1, 3] if source == "image_folder" else [0, 1, 2, 3]  # class folders first
    np.testing.assert_array_equal(cached.images[..., 0], expected8(np.stack(arrays)[order]))
    listed = SplitListSource(str(tmp_path / "images"), str(tmp_path / "train.txt"), 1)
    np.testing.assert_array_equal(listed[1]["image"], expected8(arrays[1])[..., None])


# ----------------------------------------------------------------------------- --out

def make_out(folder, kind):
    """An --out the build must refuse, made next to (or inside) the fixture's data."""
    if kind == "data_dir":
        return folder / "images"
    if kind == "inside_data_dir":
        return folder / "images" / "cache"
    out = folder / "mine"
    if kind == "file":
        out.write_text("my notes\n")
    elif kind == "folder":
        (out / "sub").mkdir(parents=True)
        (out / "thesis.tex").write_text("chapter 1\n")
        (out / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return out


@pytest.mark.e2e
@pytest.mark.parametrize("kind, message", [
    ("data_dir", "is --data-dir .* or inside it"),
    ("inside_data_dir", "is --data-dir .* or inside it"),
    ("file", "is an existing file or link"),
    ("folder", r"is an existing folder that is not a cache \(it holds 2 entries, e.g. 'sub'"),
])
def test_out_that_is_not_a_cache_is_refused_and_nothing_changes(image_folder, kind, message):
    folder, _ = image_folder
    out = make_out(folder, kind)
    before = snapshot(folder)
    result = procs.run_module("livt_jax.tools.cache", *build_args(folder, out))
    line = procs.one_error_line(result)
    assert str(out) in line and "nothing was changed" in line and re.search(message, line), line
    assert snapshot(folder) == before  # every file still there, byte for byte, nothing added


@pytest.mark.e2e
def test_cache_holding_a_users_file_is_refused(image_folder):
    folder, _ = image_folder
    out = folder / "cache"
    assert procs.run_module("livt_jax.tools.cache", *build_args(folder, out)).returncode == 0
    (out / "README.md").write_text("which images these are\n")
    before = snapshot(folder)
    result = procs.run_module("livt_jax.tools.cache", *build_args(folder, out))
    assert "is a cache that also holds ['README.md']" in procs.one_error_line(result)
    assert snapshot(folder) == before


@pytest.mark.e2e
def test_new_empty_or_cache_folder_is_written(image_folder):
    folder, _ = image_folder
    out = folder / "cache"
    out.mkdir()  # an empty folder holds nothing to lose
    assert procs.run_module("livt_jax.tools.cache", *build_args(folder, out)).returncode == 0
    first = snapshot(out)
    rebuilt = procs.run_module("livt_jax.tools.cache", *build_args(folder, out))  # replaces a cache
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert {k for k in snapshot(out)} == set(first)
    assert sorted(os.listdir(folder)) == ["cache", "images", "test.txt", "train.txt"]


@pytest.mark.e2e
def test_failed_build_into_a_new_folder_says_nothing_was_written(image_folder):
    folder, _ = image_folder
    (folder / "images" / "class 1" / "img7.png").write_bytes(b"not a png")
    result = procs.run_module("livt_jax.tools.cache", *build_args(folder, folder / "cache"))
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]  # after the progress log
    assert line.startswith("error: ") and "img7.png" in line and f"nothing was written at {folder / 'cache'}" in line, line
    assert not (folder / "cache").exists()


# ----------------------------------------------------------------------------- checksums

def two_caches(folder):
    """Caches 'a' and 'b' of the same shapes, 'b' from other pixels; under folder/caches."""
    caches = folder / "caches"
    assert procs.run_module("livt_jax.tools.cache", *build_args(folder, caches / "a", "--in-chans", "1",
                                                        "--resize-shorter", "28")).returncode == 0
    for path in sorted((folder / "images").rglob("*.png")):
        Image.fromarray(255 - np.asarray(Image.open(path))).save(path)
    assert procs.run_module("livt_jax.tools.cache", *build_args(folder, caches / "b", "--in-chans", "1",
                                                        "--resize-shorter", "28")).returncode == 0
    return caches


def swap(path_a, path_b):
    tmp = str(path_a) + ".swap"
    os.replace(path_a, tmp)
    os.replace(path_b, path_a)
    os.replace(tmp, path_b)


@pytest.mark.e2e
@pytest.mark.slow
def test_swapped_cache_file_is_named_when_the_cache_opens(image_folder, tmp_path):
    folder, _ = image_folder
    caches = two_caches(folder)
    swap(caches / "a" / "train_images.npy", caches / "b" / "train_images.npy")
    with pytest.raises(ValueError, match=r"train_images.npy does not match the manifest's checksum"):
        CacheSource(str(caches / "a"), "train")
    verified = procs.run_module("livt_jax.tools.cache", "--verify", caches / "b")
    assert "train_images.npy do(es) not match" in procs.one_error_line(verified, status=1)
    result = procs.run_module("livt_jax.main", "--config", "configs/demo.py", "--workdir", tmp_path / "run",
                     "--config.stage=finetune", "--config.data.source=cache",
                     f"--config.data.data_dir={caches}", "--config.data.name=a",
                     "--config.data.train_split=train", "--config.data.eval_split=test",
                     "--config.data.imbalance_ratio=1")
    line = procs.one_error_line(result, status=1)
    assert "cache" in line and "train_images.npy does not match the manifest's checksum" in line, line


@pytest.mark.e2e
def test_copied_cache_verifies_in_full_once_then_opens_by_stat(image_folder, caplog):
    folder, _ = image_folder
    caches = two_caches(folder)
    shutil.copytree(caches / "a", caches / "copy")  # new inodes: the stat differs
    with caplog.at_level(logging.WARNING):
        CacheSource(str(caches / "copy"), "train")
    assert "its checksum matches" in caplog.text and "--verify" in caplog.text
    assert cache_manifest.verify(str(caches / "copy")) == []
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        CacheSource(str(caches / "copy"), "train")
    assert "checksum" not in caplog.text


@pytest.mark.e2e
def test_manifest_crc_matches_zlib_of_the_file(image_folder):
    folder, _ = image_folder
    out = folder / "cache"
    assert procs.run_module("livt_jax.tools.cache", *build_args(folder, out)).returncode == 0
    manifest = cache_manifest.read_manifest(str(out))
    for name, record in manifest["files"].items():
        data = (out / name).read_bytes()
        assert record["crc32"] == f"{zlib.crc32(data):08x}" and record["size"] == len(data)
