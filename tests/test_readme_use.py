"""README "Use a trained model": its commands, run as written (the command names as
`python -m` modules, /data/imagenet as a small split-list data set of Animal-MNIST PNGs)
on a tiny described export."""

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from livt_jax.data import animal_mnist
from tests.helpers.exports import write_export
from tests.helpers.common import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = {"livt-predict": "livt_jax.predict", "livt-train": "livt_jax.main",
           "livt-adjust": "livt_jax.adjust"}
TRAIN_COUNTS = [30, 20, 12, 8, 5, 4, 3, 2, 2, 1]


def readme_commands() -> list[str]:
    """The commands of the README block that follows the test's marker comment."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    block = re.search(r"tests/test_readme_use\.py\. -->\n```bash\n(.*?)```", text, re.S).group(1)
    joined = block.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def write_split_lists(root):
    """ImageNet_LT_{train,test,val}.txt over Animal-MNIST PNGs (long-tailed train)."""
    _, test = animal_mnist.load_animal_mnist(None)
    by_class = [np.flatnonzero(test.labels == c) for c in range(10)]
    sizes = {"train": TRAIN_COUNTS, "test": [6] * 10, "val": [6] * 10}
    start = [0] * 10
    for split, counts in sizes.items():
        lines = []
        for c, n in enumerate(counts):
            for i in by_class[c][start[c]:start[c] + n]:
                name = f"img/{i}.png"
                Image.fromarray(test.images[i][..., 0]).save(os.path.join(root, name))
                lines.append(f"{name} {c}\n")
            start[c] += n
        (root / f"ImageNet_LT_{split}.txt").write_text("".join(lines))


@pytest.mark.e2e
def test_readme_use_a_trained_model_commands(tmp_path):
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    write_split_lists(data)
    config = tiny_config()
    config.data.update(dict(source="split_list", data_dir=str(data), imbalance_ratio=1.0,
                            train_split="ImageNet_LT_train.txt",
                            eval_split="ImageNet_LT_test.txt"))
    write_export(tmp_path / "runs/imagenet_lt/finetune/export", config, seed=7)
    (tmp_path / "photos/more").mkdir(parents=True)
    for n, name in enumerate(sorted(os.listdir(data / "img"))[:5]):
        target = tmp_path / "photos" / ("more" if n % 2 else "") / name
        target.write_bytes((data / "img" / name).read_bytes())
    os.symlink(os.path.join(REPO, "configs"), tmp_path / "configs")

    env = {**os.environ, "PYTHONPATH": REPO}
    outputs = []
    commands = readme_commands()
    assert [c.split()[0] for c in commands] == ["livt-predict", "livt-train", "livt-adjust"]
    for command in commands:
        argv = shlex.split(command.replace("/data/imagenet", str(data)))
        argv = [sys.executable, "-m", MODULES[argv[0]], *argv[1:]]
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, (command, result.stderr[-3000:])
        outputs.append(result.stdout)

    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert rows[0] == "path,class_1,prob_1,class_2,prob_2,class_3,prob_3" and len(rows) == 6
    for name in ("eval_logits.npz", "eval_val_logits.npz"):
        saved = np.load(tmp_path / "runs/eval" / name)
        assert saved["logits"].shape == (60, 10)
        np.testing.assert_array_equal(saved["train_class_counts"], TRAIN_COUNTS)
    assert "chosen on validation: τ = " in outputs[2]
    # livt-adjust's raw row is the eval's table of the test split.
    eval_final = next(line for line in outputs[1].splitlines() if line.startswith("final"))
    adjust_raw = next(line for line in outputs[2].splitlines() if line.startswith("raw"))
    assert eval_final.split()[1:7] == adjust_raw.split()[1:7]
