"""The benchmarks' bad input: one line on stderr, exit status 2, no traceback, nothing timed."""


import pytest

from tests.helpers import procs

pytestmark = pytest.mark.e2e  # each case runs a command


def assert_usage_error(result, *expected):
    line = procs.one_error_line(result)
    for text in expected:
        assert text in line, line
    assert "img/s" not in result.stdout  # nothing was timed


@pytest.mark.parametrize("args, expected", [
    (["--config.model.varient=B"], ["unknown config key 'model.varient'", "'model.variant'"]),
    (["--config=configs/demo.py", "--config.finetune.blr=1"], ["did you mean 'finetune.optim.blr'"]),
    (["--stages=finetune,eval"], ["--stages", "('pretrain', 'finetune')"]),
    (["--batch=0"], ["--batch", "0 must be >= 1"]),
    (["--compare_torch"], ["unrecognized arguments: --compare_torch"]),
    (["--config.finetune.optim.blr=fast"], ["--config.finetune.optim.blr=fast: expected a number"]),
    (["--config=configs/nope.py"], ["configs/nope.py"]),
])
def test_train_step_benchmark_usage_errors(args, expected):
    assert_usage_error(procs.run_module("livt_jax.tools.benchmark", *args), *expected)


@pytest.mark.parametrize("args, expected", [
    (["--imge-size", "3"], ["unrecognized arguments: --imge-size"]),
    (["--kinds", "mgp,bfr"], ["--kinds", "'bfr' is not one of ('mgp', 'bft')"]),
    (["--stage", "eval"], ["--stage", "'eval'"]),
    (["--batch-size", "0"], ["--batch-size", "0 must be >= 1"]),
    (["--synthetic", "100"], ["--synthetic", "'100' is not N,R"]),
    (["--data-dir", "{tmp}/nowhere"], ["{tmp}/nowhere"]),
    (["--source", "split_list", "--data-dir", "{tmp}/nowhere"], ["split list 'train' not found"]),
    (["--config", "{tmp}/nope.py"], ["config file '{tmp}/nope.py' not found"]),
    (["--config", "demo", "--config.data.imbalance_ratio=ten"],
     ["--config.data.imbalance_ratio=ten: expected a number"]),
    (["--config", "demo", "--config.data.imbalanc_ratio=10"],
     ["unknown config key 'data.imbalanc_ratio'"]),
])
def test_input_pipeline_benchmark_usage_errors(tmp_path, args, expected):
    fill = lambda text: text.replace("{tmp}", str(tmp_path))  # noqa: E731
    result = procs.run_module("livt_jax.tools.data_benchmark", *map(fill, args))
    assert_usage_error(result, *map(fill, expected))
