"""The input-pipeline benchmark runs and prints one row per augmentation kind."""

import pytest

from livt_jax.tools import data_benchmark as benchmark


def test_benchmark_table(capsys):
    pytest.importorskip("animal_mnist")
    benchmark.main(["--source", "animal_mnist", "--steps", "2", "--batch-size", "8", "--image-size", "16"])
    benchmark.main(["--synthetic", "24,40", "--steps", "1", "--batch-size", "4", "--image-size", "32",
                    "--kinds", "bft", "--augment-on", "host,device"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[-2:] == ["img/s", "img/s/core"]
    rows = [line.split() for line in lines if not line.startswith("source")]
    assert [r[1:3] for r in rows[:2]] == [["mgp", "host"], ["bft", "host"]]
    assert rows[2][:5] == ["synthetic", "cache", "40px", "bft", "host"]
    assert rows[3][:5] == ["synthetic", "cache", "40px", "bft", "device"]
    assert rows[4][:5] == ["synthetic", "cache", "40px", "bft", "jit"]  # the device transform itself
    assert all(float(r[-2]) > 0 for r in rows)
