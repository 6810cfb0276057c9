"""The description through conversion: export -> .safetensors + config.json -> export -> eval."""

import json
import os

import jax
import numpy as np
import pytest

from livt_jax import checkpoint, description, train
from livt_jax.tools import convert
from tests.helpers.exports import eval_config, write_export
from tests.helpers.common import tiny_config


@pytest.fixture
def export(tmp_path):
    path = tmp_path / "export"
    write_export(path, tiny_config(), seed=9)
    return str(path)


def test_round_trip_keeps_the_description_and_the_table(export, tmp_path, capsys):
    pytest.importorskip("safetensors")
    weights = str(tmp_path / "torch" / "model.safetensors")
    os.makedirs(os.path.dirname(weights))
    assert convert.main(["to-torch", export, weights]) == 0
    timm_cfg = json.loads((tmp_path / "torch" / "config.json").read_text())
    assert timm_cfg["num_classes"] == 10 and timm_cfg["global_pool"] == "avg"
    assert timm_cfg["pretrained_cfg"]["input_size"] == [1, 28, 28]
    assert timm_cfg["pretrained_cfg"]["mean"] == [0.5] and timm_cfg["pretrained_cfg"][
        "crop_pct"] == 0.875
    assert timm_cfg["label_names"][:2] == ["Bear", "Bird"]
    assert timm_cfg["model_args"]["embed_dim"] == 32 and timm_cfg["model_args"]["in_chans"] == 1

    back = str(tmp_path / "back")
    assert convert.main(["to-jax", weights, back]) == 0  # no model options needed
    assert "checked against" in capsys.readouterr().out
    original, restored = description.read(export), description.read(back)
    for key in ("kind", "model", "class_names", "train_class_counts", "mean", "std",
                "eval_crop_pct", "loss", "tau"):
        assert restored[key] == original[key], key
    for a, b in zip(jax.tree_util.tree_leaves(checkpoint.load_params_export(export)),
                    jax.tree_util.tree_leaves(checkpoint.load_params_export(back)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Both exports score the same, with a config that names another model (depth 4, width 64).
    tables = [train.train_and_evaluate(eval_config(path, embed_dim=64, depth=4, num_heads=4),
                                       str(tmp_path / f"eval{n}"))["final"]
              for n, path in enumerate((export, back))]
    assert tables[0] == tables[1]


def test_timm_builds_the_classifier_from_the_config_json(export, tmp_path):
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    weights = str(tmp_path / "model.safetensors")
    assert convert.main(["to-torch", export, weights]) == 0
    model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    data = timm.data.resolve_data_config({}, model=model)
    assert data["input_size"] == (1, 28, 28) and data["crop_pct"] == 0.875
    assert model.pretrained_cfg["label_names"][9] == "Zebra"
    x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
    from livt_jax.models import factory
    described = description.model_config(description.read(export))
    ours = factory.build_vit(described.model, described.data.in_chans, 10, 28, 0.0)
    expected = ours.apply({"params": checkpoint.load_params_export(export)}, x, train=False)
    with torch.no_grad():
        got = model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(got, np.asarray(expected), atol=1e-4, rtol=1e-4)


def test_without_a_description_in_chans_is_an_option(export, tmp_path, capsys):
    weights = str(tmp_path / "model.safetensors")
    assert convert.main(["to-torch", export, weights]) == 0
    os.remove(tmp_path / "config.json")
    dims = ["--embed-dim", "32", "--depth", "2", "--num-heads", "2", "--patch-size", "4",
            "--img-size", "28", "--num-classes", "10"]
    assert convert.main(["to-jax", weights, str(tmp_path / "a"), *dims]) == 2
    assert "(4, 4, 1, 32)" in capsys.readouterr().err  # a 3-channel target by default
    assert convert.main(["to-jax", weights, str(tmp_path / "b"), *dims, "--in-chans", "1"]) == 0
    assert description.read(str(tmp_path / "b")) is None


def test_options_contradicting_the_config_json_are_one_line(export, tmp_path, capsys):
    weights = str(tmp_path / "model.safetensors")
    assert convert.main(["to-torch", export, weights]) == 0
    assert convert.main(["to-jax", weights, str(tmp_path / "a"), "--in-chans", "3",
                         "--embed-dim", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --in-chans 3 but the description says 1 (drop the option, or the "
                   "config.json beside the file)"]
