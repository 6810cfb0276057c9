"""The start-up line and the profiler window (`config.profile`)."""

import gzip
import json

import jax
import pytest
from absl import logging

from livt_jax import profiling, train
from tests.helpers.common import tiny_config


class _Recorder:
    """Stands in for jax.profiler's start/stop, recording at which step each came."""

    def __init__(self, monkeypatch):
        self.calls, self.step = [], None
        monkeypatch.setattr(jax.profiler, "start_trace",
                            lambda log_dir, **kw: self.calls.append(("start", self.step)))
        monkeypatch.setattr(jax.profiler, "stop_trace",
                            lambda: self.calls.append(("stop", self.step)))

    def run(self, profiler, first_step, last_step):
        for self.step in range(first_step, last_step):
            profiler.before_step(self.step, state=None)
        profiler.stop()
        return self.calls


@pytest.mark.parametrize("first_step, num_steps, expected", [
    (0, 3, [("start", 2), ("stop", 5)]),  # steps 2, 3, 4 traced
    (3, 3, [("start", 3), ("stop", 5)]),  # resumed inside the window: the rest of it
    (6, 3, []),  # resumed after the window
    (0, 0, []),  # off
    (0, 20, [("start", 2), ("stop", 9)]),  # the window outlasts the run: stopped at the end
])
def test_window(tmp_path, monkeypatch, first_step, num_steps, expected):
    profiler = profiling.StepWindowProfiler(str(tmp_path), start_step=2, num_steps=num_steps)
    assert _Recorder(monkeypatch).run(profiler, first_step, 10) == expected


def test_negative_window_is_refused(tmp_path):
    with pytest.raises(ValueError, match="num_steps=-1"):
        profiling.StepWindowProfiler(str(tmp_path), start_step=0, num_steps=-1)


@pytest.mark.e2e
def test_startup_line_and_trace_written_on_cpu(tmp_path, capsys):
    config = tiny_config()
    config.stage = "pretrain"
    config.profile.update(dict(start_step=1, num_steps=2))
    logging.set_verbosity(logging.ERROR)  # the start-up line shows whatever the verbosity
    try:
        train.train_and_evaluate(config, str(tmp_path))
    finally:
        logging.set_verbosity(logging.INFO)
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("pretrain: JAX"))
    assert f"JAX {jax.__version__}, backend cpu, 1 process(es), 8 device(s)" in line
    assert "mesh data=8 x fsdp=1, global batch 64 = 8 per device" in line

    runs = list((tmp_path / "profile" / "plugins" / "profile").iterdir())
    assert len(runs) == 1
    assert list(runs[0].glob("*.xplane.pb")), "no TensorBoard trace"
    with gzip.open(runs[0] / "perfetto_trace.json.gz") as f:
        events = json.load(f)["traceEvents"]
    assert any("train_step" in str(e.get("name", "")) or "jit_" in str(e.get("name", ""))
               for e in events), "the trace holds no jitted step"
