"""`livt-convert to-jax` on files that are no checkpoint: exit 2 and one line naming the
corrupt file."""

import re
import zipfile

import numpy as np
import pytest

from livt_jax.tools import convert

pytestmark = pytest.mark.torch

pytest.importorskip("torch")
pytest.importorskip("safetensors")


def write_text(path):
    path.write_text("this is a text file, not a checkpoint\n")


def write_random(path):
    path.write_bytes(b"\x8f" + np.random.default_rng(0).bytes(4095))


def write_random_pickle_start(path):  # starts like a legacy torch.save pickle, then noise
    path.write_bytes(b"\x80\x02" + np.random.default_rng(1).bytes(4094))


def write_junk_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "junk")


@pytest.mark.parametrize("name, write, message", [
    ("text.pth", write_text, r"is not a PyTorch checkpoint: it is neither a zip archive nor a pickle"),
    ("random.pth", write_random, r"is not a PyTorch checkpoint"),
    ("noise.pth", write_random_pickle_start, r"is corrupt or truncated: torch could not read it"),
    ("junk.pth", write_junk_zip, r"is corrupt or truncated: torch could not read it"),
    ("text.safetensors", write_text, r"is not a valid .safetensors file"),
])
def test_corrupt_file_is_one_line_not_a_pickle_warning(tmp_path, capsys, name, write, message):
    src = tmp_path / name
    write(src)
    code = convert.main(["to-jax", str(src), str(tmp_path / "export")])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], lines
    assert re.search(message, lines[0]), lines[0]
    assert "--unsafe-load" not in err and "pickled objects" not in err
    assert not (tmp_path / "export").exists()
