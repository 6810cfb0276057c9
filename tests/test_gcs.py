"""gs:// end to end against a real GCS API on 127.0.0.1 (fake-gcs-server, the
`gcs_bucket` fixture): workdirs, resume, split-list data, exports and conversion
in a bucket, and the errors a user meets (missing bucket / object, no credentials)."""

import http.server
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import fsspec
import jax
import numpy as np
import pytest
from PIL import Image

from livt_jax import checkpoint, paths, train
from livt_jax.tools import convert
from livt_jax.models import factory
from livt_jax.data import animal_mnist
from tests.helpers import procs
from tests.helpers.common import TINY_MODEL_FLAGS, tiny_config

pytestmark = [pytest.mark.gcs, pytest.mark.e2e]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def prefix(gcs_bucket):
    """A fresh folder in the bucket for one test."""
    return f"{gcs_bucket}/{uuid.uuid4().hex[:8]}"


def objects(url: str) -> list[str]:
    """Every object under `url`, relative to it."""
    base = url.removeprefix("gs://")
    return sorted(p[len(base) + 1:] for p in fsspec.filesystem("gs").find(url))


def read_jsonl(url: str) -> list[dict]:
    return [json.loads(line) for line in paths.read_text(url).splitlines()]


def run_main(args: list[str], cwd) -> subprocess.CompletedProcess:
    """`python -m livt_jax.main ARGS` in `cwd`, the repository importable."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = procs.run([sys.executable, "-m", "livt_jax.main", *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def upload_animal_mnist(url: str) -> None:
    local = animal_mnist.package_data_dir()
    for name in os.listdir(local):
        if name.endswith(".gz"):
            with open(os.path.join(local, name), "rb") as f:
                paths.write_bytes(f"{url}/{name}", f.read())


# ----------------------------------------------------------------------------- end to end

def test_demo_run_with_workdir_and_data_in_the_bucket_writes_only_there(prefix, tmp_path):
    upload_animal_mnist(f"{prefix}/animal_mnist")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run_main(["--config", os.path.join(REPO, "configs/demo.py"), "--workdir", f"{prefix}/run",
              f"--config.data.data_dir={prefix}/animal_mnist", "--config.pretrain.epochs=1",
              "--config.finetune.epochs=1", "--config.pretrain.batch_size=64",
              "--config.finetune.batch_size=64", "--config.eval.batch_size=512", *TINY_MODEL_FLAGS], cwd)
    assert os.listdir(cwd) == []
    written = objects(f"{prefix}/run")
    for stage in ("pretrain", "finetune"):
        assert f"{stage}/metrics.jsonl" in written
        assert any(p.startswith(f"{stage}/export/") for p in written), stage
        assert any(p.startswith(f"{stage}/checkpoints/") for p in written), stage
        assert any(p.startswith(f"{stage}/tb/{stage}/events.out.tfevents") for p in written), stage
    for name in ("pretrain/reconstructions.png", "finetune/final_per_class.csv",
                 "finetune/final_per_class.png"):
        assert name in written, name
    records = read_jsonl(f"{prefix}/run/finetune/metrics.jsonl")
    assert any("eval_top1" in r for r in records) and any("loss" in r for r in records)
    png = paths.read_bytes(f"{prefix}/run/finetune/final_per_class.png")
    assert Image.open(io.BytesIO(png)).size[0] > 100


def test_killed_run_resumes_from_the_bucket_bit_identically(prefix, tmp_path):
    config = tiny_config(**{"finetune.epochs": 2})
    config.stage = "finetune"
    straight = train.train_and_evaluate(config, str(tmp_path / "straight"))
    # The same run as a command, killed (SIGKILL: no chance to save) once step 7 is
    # logged and a checkpoint is complete in the bucket; an async save may be half-written.
    workdir = f"{prefix}/run"
    run = subprocess.Popen(
        [sys.executable, "-m", "livt_jax.main", "--config", os.path.join(REPO, "configs/demo.py"),
         "--workdir", workdir, "--config.stage=finetune", "--config.finetune.epochs=2",
         "--config.finetune.batch_size=64", "--config.eval.batch_size=512", *TINY_MODEL_FLAGS],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    manager = checkpoint.make_manager(f"{workdir}/checkpoints", save_every_steps=5, keep=2,
                                      keep_best=True, async_save=False)
    deadline = time.monotonic() + procs.scaled(600)
    try:  # the run advances in 0.1 s slices and stands still (SIGSTOP) while we look
        while run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            run.send_signal(signal.SIGSTOP)
            logged = paths.exists(f"{workdir}/metrics.jsonl") and max(
                r["step"] for r in read_jsonl(f"{workdir}/metrics.jsonl")) >= 7
            manager.reload()
            if logged and manager.latest_step() is not None:
                break
            run.send_signal(signal.SIGCONT)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == -9, "the run ended before it could be killed"
    manager.reload()
    killed_at = manager.latest_step()
    manager.close()
    resumed = train.train_and_evaluate(config, workdir)
    assert resumed["total_steps"] == straight["total_steps"] > killed_at >= 5
    for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(straight["state"].params)),
                    jax.tree_util.tree_leaves(jax.device_get(resumed["state"].params)), strict=True):
        np.testing.assert_array_equal(a, b)
    losses = lambda rows: {r["step"]: r["loss"] for r in rows if "loss" in r}  # noqa: E731
    local = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").open()]
    assert losses(read_jsonl(f"{workdir}/metrics.jsonl")) == losses(local)
    assert resumed["final"]["top1"] == straight["final"]["top1"]


def write_split_list_dataset(url: str, sizes=((40, 36), (36, 44), (32, 32))) -> None:
    """3 classes of small RGB PNGs (one colour per class, sizes differ) and the
    ImageNet-LT list names, all in the bucket."""
    rng = np.random.default_rng(0)
    lines = {"train": [], "test": []}
    for label, (h, w) in enumerate(sizes):
        for i in range(16 if label == 0 else 8):
            pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            pixels[..., label] += 180
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            name = f"class{label}/img{i}.png"
            paths.write_bytes(f"{url}/{name}", buffer.getvalue())
            lines["test" if i < 4 else "train"].append(f"{name} {label}")
    for split, rows in lines.items():
        paths.write_text(f"{url}/ImageNet_LT_{split}.txt", "\n".join(rows) + "\n")


def test_split_list_data_in_the_bucket_trains_and_evaluates(prefix, tmp_path):
    """The README's pod command (configs/imagenet_lt.py, workdir and data_dir in a
    bucket), shrunk: tiny model, 32 px, 1 epoch per stage."""
    write_split_list_dataset(f"{prefix}/imagenet_lt")
    run_main(["--config", os.path.join(REPO, "configs/imagenet_lt.py"),
              "--workdir", f"{prefix}/livt_in1k", f"--config.data.data_dir={prefix}/imagenet_lt",
              "--config.data.image_size=32", "--config.model.patch_size=8",
              "--config.pretrain.epochs=1", "--config.finetune.epochs=1",
              "--config.pretrain.batch_size=16", "--config.finetune.batch_size=16",
              "--config.eval.batch_size=16", "--config.model.dtype=bfloat16", *TINY_MODEL_FLAGS], tmp_path)
    rows = paths.read_text(f"{prefix}/livt_in1k/finetune/final_per_class.csv").splitlines()
    assert rows[0].startswith("class,name,train_count") and len(rows) == 1 + 3
    assert [int(r.split(",")[2]) for r in rows[1:]] == [12, 4, 4]  # the lists' train counts
    evals = [r for r in read_jsonl(f"{prefix}/livt_in1k/finetune/metrics.jsonl") if "eval_top1" in r]
    assert evals and 0 <= evals[-1]["eval_top1"] <= 100


def test_eval_and_convert_to_torch_read_a_bucket_export(prefix, tmp_path):
    pytest.importorskip("safetensors")
    config = tiny_config()
    model = factory.build_vit(config.model, config.data.in_chans, 10, 28, 0.0)
    params = jax.jit(lambda: model.init(jax.random.key(3), np.zeros((1, 28, 28, 1)),
                                        train=False)["params"])()
    for where in (f"{prefix}/export", str(tmp_path / "export")):
        checkpoint.save_params_export(where, params)
    config.stage = "eval"
    scores = {}
    for name, export in (("bucket", f"{prefix}/export"), ("local", str(tmp_path / "export"))):
        config.eval.params_from = export
        scores[name] = train.train_and_evaluate(config, f"{prefix}/eval_{name}")["final"]
    assert scores["bucket"] == scores["local"]
    assert "eval_per_class.csv" in objects(f"{prefix}/eval_bucket")

    for src, dst in ((f"{prefix}/export", f"{prefix}/model.safetensors"),
                     (str(tmp_path / "export"), str(tmp_path / "model.safetensors"))):
        assert convert.main(["to-torch", src, dst]) == 0
    assert paths.read_bytes(f"{prefix}/model.safetensors") == (tmp_path / "model.safetensors").read_bytes()
    # ... and back, bucket to bucket.
    assert convert.main(["to-jax", f"{prefix}/model.safetensors", f"{prefix}/back"]) == 0
    back = checkpoint.load_params_export(f"{prefix}/back")
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(back), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------- errors

def test_missing_bucket_is_one_line_naming_it(gcs_bucket, tmp_path):
    start = time.monotonic()
    with pytest.raises(paths.StorageError, match=r"^bucket gs://no-such-bucket does not exist") as e:
        train.train_and_evaluate(tiny_config(), "gs://no-such-bucket/run")
    assert "\n" not in str(e.value) and time.monotonic() - start < procs.scaled(10)
    # The command line prints that line alone (no traceback).
    result = procs.run(
        [sys.executable, "-m", "livt_jax.main", "--config", os.path.join(REPO, "configs/demo.py"),
         "--workdir", "gs://no-such-bucket/run"], cwd=tmp_path, capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: bucket gs://no-such-bucket does not exist")


def test_missing_objects_name_the_url(prefix):
    with pytest.raises(paths.StorageError, match=f"^{prefix}/nothing.txt does not exist "
                                                 r"\(expected a split list\)$"):
        paths.read_text(f"{prefix}/nothing.txt", "a split list")
    with pytest.raises(FileNotFoundError, match=f"no params export at '{prefix}/no_export'"):
        checkpoint.load_params_export(f"{prefix}/no_export")
    config = tiny_config()
    config.data.update(dict(source="split_list", data_dir=f"{prefix}/data",
                            train_split="train.txt", eval_split="val.txt"))
    with pytest.raises(FileNotFoundError, match="split list 'train.txt' not found"):
        train.train_and_evaluate(config, f"{prefix}/run")
    config.data.update(dict(source="cache", name="imagenet_lt"))
    with pytest.raises(ValueError, match="gcsfuse"):
        train.train_and_evaluate(config, f"{prefix}/run")


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    """Answers every request as GCS answers an anonymous caller on a private bucket."""

    def _deny(self):
        body = json.dumps({"error": {"code": 401, "message": "Anonymous caller does not have "
                                     "storage.objects.get access to the Google Cloud Storage object."}})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _deny

    def log_message(self, *args):
        pass


def test_no_credentials_is_one_line_with_the_fix(gcs_bucket, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
        start = time.monotonic()
        with pytest.raises(paths.StorageError, match=r"^cannot access gs://private/list.txt "
                                                     r"\(expected a split list\).*401.*gcloud auth"):
            paths.read_text("gs://private/list.txt", "a split list")
        with pytest.raises(paths.StorageError, match="gs://private/list.txt.*gcloud auth"):
            paths.is_file("gs://private/list.txt")  # not "not found": the server said 401
        with pytest.raises(paths.StorageError, match="gs://private.*gcloud auth") as e:
            paths.makedirs("gs://private/run")
        assert "\n" not in str(e.value) and time.monotonic() - start < procs.scaled(10)
    finally:
        server.shutdown()
        server.server_close()
