"""What a pod or batch job's log file shows: with stdout not a terminal, one plain line per
log step and one per evaluation, no progress bar; TensorBoard gets the config as hparams."""

import glob
import os
import re
import struct
import subprocess
import sys

import pytest
from tensorboardX.proto import event_pb2, plugin_hparams_pb2

from livt_jax import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.model.embed_dim=32", "--config.model.depth=2", "--config.model.num_heads=2",
        "--config.checkpoint.save_every_steps=10"]
STEP_LINE = re.compile(r"^finetune step (\d+)/(\d+) epoch (\d+\.\d\d) loss (\d+\.\d{4}) "
                       r"lr (\d\.\d\de[-+]\d\d) img/s (\d+) ETA (\d+):(\d\d):(\d\d)$")
EVAL_LINE = re.compile(r"^finetune (?:validation|test) step (\d+) epoch (\d+\.\d\d): top-1 (\d+\.\d\d) "
                       r"many (\d+\.\d\d) medium (\d+\.\d\d) few (\d+\.\d\d) top-5 (\d+\.\d\d)$")


def read_events(path: str) -> list:
    """The Event protos of a TFRecord event file (length, crc, data, crc per record)."""
    events, data = [], open(path, "rb").read()
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        events.append(event_pb2.Event.FromString(data[offset + 12:offset + 12 + length]))
        offset += 12 + length + 4
    return events


@pytest.mark.e2e
def test_log_lines_when_stdout_is_a_pipe(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "livt_jax.main", "--config", "configs/demo.py", "--workdir",
         str(workdir), "--config.stage=finetune", "--config.finetune.epochs=2",
         "--config.finetune.batch_size=128", "--config.eval.batch_size=512",
         "--config.log_every_steps=4", *TINY],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout)  # the excerpt a user reads (pytest -s shows it)
    assert "\r" not in result.stdout + result.stderr  # no progress bar redraws
    lines = result.stdout.splitlines()
    steps = [STEP_LINE.match(line) for line in lines if line.startswith("finetune step ")]
    evals = [EVAL_LINE.match(line) for line in lines if re.match(r"finetune (validation|test) step", line)]
    assert steps and all(steps) and evals and all(evals), lines
    total = int(steps[0].group(2))
    logged = [int(m.group(1)) for m in steps]
    # every log_every_steps, and the last step
    assert logged == sorted({*range(4, total + 1, 4), total})
    records = report.read_metrics(str(workdir), "finetune")
    by_step = {r["step"]: r for r in records if "loss" in r}
    for m in steps:  # the printed figures are the logged ones
        record = by_step[int(m.group(1))]
        assert m.group(4) == f"{record['loss']:.4f}" and m.group(5) == f"{record['lr']:.2e}"
        assert float(m.group(3)) == round(int(m.group(1)) / (total / 2), 2)
    assert int(steps[-1].group(7)) == int(steps[-1].group(8)) == int(steps[-1].group(9)) == 0
    logged_evals = [r for r in records if "eval_top1" in r]
    assert len(evals) == len(logged_evals) == 2  # one per epoch
    for m, record in zip(evals, logged_evals):
        assert int(m.group(1)) == record["step"]
        for group, key in zip(m.groups()[2:], ("top1", "many", "medium", "few", "top5")):
            assert group == f"{record['eval_' + key]:.2f}", key

    (events_file,) = glob.glob(str(workdir / "tb" / "finetune" / "events.out.tfevents*"))
    hparams = {}
    for event in read_events(events_file):
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                content = plugin_hparams_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content)
                hparams = {k: v for k, v in content.session_start_info.hparams.items()}
    assert hparams["finetune.tau"].number_value == 1.0  # Bal-BCE's default τ
    assert hparams["log_every_steps"].number_value == 4
    assert hparams["model.embed_dim"].number_value == 32
    assert hparams["data.source"].string_value == "animal_mnist"


def test_format_lines():
    line = report.format_step_line("pretrain", 7, 100, 0.35, {"loss": 1.234567, "lr": 3e-4}, 1534.4,
                                   3723.6)
    assert line == "pretrain step 7/100 epoch 0.35 loss 1.2346 lr 3.00e-04 img/s 1534 ETA 1:02:04"
    assert report.format_eval_line("finetune", "validation", 50, {"top1": 45.2, "few": 3.0}) == (
        "finetune validation step 50: top-1 45.20 few 3.00")
