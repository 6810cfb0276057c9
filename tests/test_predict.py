"""livt-predict: folders, split lists and gs:// inputs, bad images, CSV / JSONL, against a
direct forward pass of the export."""

import csv
import json
import os
import uuid

import numpy as np
import pytest
from PIL import Image

from livt_jax import checkpoint, description, paths, predict
from livt_jax.config_lib import stage_data_config
from livt_jax.data import animal_mnist, pipeline
from livt_jax.models import factory
from tests.helpers.exports import write_export
from tests.helpers.common import tiny_config


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    path = tmp_path_factory.mktemp("predict") / "export"
    write_export(path, tiny_config(), seed=5)
    return str(path)


@pytest.fixture(scope="module")
def images():
    """13 Animal-MNIST test images (uint8 (28, 28)) and their file names."""
    _, test = animal_mnist.load_animal_mnist(None)
    picks = range(0, 2000, 154)
    return {f"{i:04d}_{test.class_names[test.labels[i]]}.png": test.images[i][..., 0]
            for i in picks}


def write_folder(root, images):
    """The images as PNGs, every other one in a subfolder; their paths in sorted order."""
    written = []
    for n, (name, image) in enumerate(images.items()):
        path = os.path.join(root, "sub" if n % 2 else "", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(image).save(path)
        written.append(path)
    return sorted(written)


def reference_top_k(export, images, k):
    """(class names, probs) of a direct forward pass: softmax of the logits."""
    found = description.read(export)
    config = tiny_config()
    model = factory.build_vit(config.model, config.data.in_chans, 10, 28, 0.0)
    params = checkpoint.load_params_export(export)
    batch = pipeline.eval_images(stage_data_config(config, "finetune"),
                                 [im[..., None] for im in images])
    logits = np.asarray(model.apply({"params": params}, batch, train=False), np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    names = [[found["class_names"][i] for i in row] for row in order]
    return names, np.take_along_axis(probs, order, axis=1)


def read_csv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.reader(f))


def test_folder_with_a_truncated_image_skips_it_and_matches_a_forward_pass(
        export, images, tmp_path, capsys):
    good = write_folder(str(tmp_path / "in"), images)
    broken = tmp_path / "in" / "sub" / "0500_broken.png"
    broken.write_bytes(open(good[0], "rb").read()[:60])
    out = tmp_path / "pred.csv"
    assert predict.main([export, str(tmp_path / "in"), "--top-k", "3", "--batch-size", "5",
                         "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"skipped {broken}: cannot decode it" in err
    assert "predicted 13 image(s), skipped 1" in err
    rows = read_csv(out)
    assert rows[0] == ["path", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3"]
    assert [r[0] for r in rows[1:]] == good  # sorted, recursive, the broken one left out
    names, probs = reference_top_k(export, [np.asarray(Image.open(p)) for p in good], 3)
    assert [r[1::2] for r in rows[1:]] == names
    np.testing.assert_allclose([[float(x) for x in r[2::2]] for r in rows[1:]], probs,
                               atol=2e-6)


def test_bad_image_stops_the_run_when_asked(export, images, tmp_path, capsys):
    good = write_folder(str(tmp_path / "in"), images)
    broken = tmp_path / "in" / "0001_broken.png"
    broken.write_bytes(open(good[0], "rb").read()[:60])
    assert predict.main([export, str(tmp_path / "in"), "--bad-images", "stop",
                         "--out", str(tmp_path / "p.csv")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot decode image {broken}: image file is truncated "
                   "(--bad-images skip to skip such files)"]


def test_split_list_and_files_to_jsonl(export, images, tmp_path):
    good = write_folder(str(tmp_path / "in"), images)
    relative = [os.path.relpath(p, tmp_path / "in") for p in good[:4]]
    (tmp_path / "in" / "list.txt").write_text("".join(f"{r} 0\n" for r in relative))
    out = tmp_path / "pred.jsonl"
    assert predict.main([export, str(tmp_path / "in" / "list.txt"), good[5], "--top-k", "2",
                         "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == good[:4] + [good[5]]
    names, probs = reference_top_k(export, [np.asarray(Image.open(p)) for p in good[:4]], 2)
    assert [[c["class"] for c in r["top_k"]] for r in rows[:4]] == names
    np.testing.assert_allclose([[c["prob"] for c in r["top_k"]] for r in rows[:4]], probs,
                               atol=1e-6)


def test_usage_errors_are_one_line(export, tmp_path, capsys):
    cases = [([export, str(tmp_path / "nothing")], "does not exist"),
             ([export, str(tmp_path), "--out", "x.txt"], "expected a name ending in .csv or"),
             ([str(tmp_path), str(tmp_path)], "model.json is missing"),
             ([export, str(tmp_path), "--top-k", "0"], "argument --top-k: 0 must be >= 1")]
    for argv, message in cases:
        try:
            status = predict.main(argv)
        except SystemExit as e:  # the argument parser's usage errors
            status = e.code
        assert status == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_export_inputs_and_output_in_a_bucket(gcs_bucket, export, images, tmp_path):
    prefix = f"{gcs_bucket}/{uuid.uuid4().hex[:8]}"
    good = write_folder(str(tmp_path / "in"), images)
    for path in good:
        paths.write_bytes(f"{prefix}/in/{os.path.relpath(path, tmp_path / 'in')}",
                          open(path, "rb").read())
    params = checkpoint.load_params_export(export)
    checkpoint.save_params_export(f"{prefix}/export", params)
    paths.write_text(description.path_of(f"{prefix}/export"),
                     open(description.path_of(export)).read())
    assert predict.main([f"{prefix}/export", f"{prefix}/in", "--out", f"{prefix}/p.csv"]) == 0
    assert predict.main([export, str(tmp_path / "in"), "--out", str(tmp_path / "p.csv")]) == 0
    bucket_rows = [r.split(",", 1) for r in paths.read_text(f"{prefix}/p.csv").splitlines()]
    local_rows = [r.split(",", 1) for r in (tmp_path / "p.csv").read_text().splitlines()]
    assert [r[0] for r in bucket_rows[1:]] == [
        f"{prefix}/in/{os.path.relpath(p, tmp_path / 'in')}" for p in good]
    assert [r[1] for r in bucket_rows] == [r[1] for r in local_rows]
