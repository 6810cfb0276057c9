"""Console commands for the absl programs (`livt-train`, `livt-benchmark`).

absl's `--help` prints the docstring of `__main__` and the flags defined by the
module named `sys.argv[0]`. Run through `python -m`, both are the program's
module; run through an installed console script, `__main__` is pip's wrapper,
so `run` points both back at the program's module before `app.run`.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from absl import app, flags


def run(main: Callable[[list[str]], Any], module_name: str, **app_run_kwargs: Any) -> None:
    """`app.run(main, **app_run_kwargs)`, `--help` showing `module_name`'s docstring and flags."""
    module = sys.modules[module_name]
    sys.modules["__main__"].__doc__ = module.__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main, **app_run_kwargs)
