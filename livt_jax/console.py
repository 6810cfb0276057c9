"""Console commands: one-line errors and exit statuses, and absl programs' `--help`.

Every command ends a failure with one line on stderr, `error: ...`, and exit status
`USAGE_ERROR` (2: a flag, a config key or value, an input that cannot work; nothing
ran) or `RUNTIME_ERROR` (1: a failure while running): `report_error` for an
exception, `parse_flags` for absl flags (`--config.KEY` overrides included),
`ArgumentParser` for argparse commands.

absl's `--help` prints the docstring of `__main__` and the flags defined by the
module named `sys.argv[0]`. Run through `python -m`, both are the program's
module; run through an installed console script, `__main__` is pip's wrapper,
so `run` points both back at the program's module before `app.run`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from absl import app, flags

from livt_jax import config_checks, config_lib

USAGE_ERROR, RUNTIME_ERROR = 2, 1
TRACEBACK_HINT = " (rerun with --traceback for the full traceback)"


def _unknown_override(argv: list[str]) -> str | None:
    """The first `--config.KEY=...` of `argv` whose KEY is no leaf of the config."""
    for arg in argv:
        if arg.startswith("--config."):
            key = arg[len("--config."):].split("=", 1)[0]
            if key not in config_lib.KEYS:
                return key
    return None


def parse_flags(argv: list[str], default_config: str | None = None) -> list[str]:
    """absl flag parsing whose errors are one line and exit status 2.

    `default_config`: the `--config` used when `argv` names none. (A config flag defined
    with a default would apply `--config.KEY` overrides while its module is imported,
    where a misspelt key is a traceback; given here, it is parsed with the flags.)
    """
    if default_config and not any(a == "--config" or a.startswith("--config=") for a in argv[1:]):
        argv = [argv[0], f"--config={default_config}", *argv[1:]]
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = config_lib.config_file_error(e) or str(e)
    except (AttributeError, KeyError) as e:  # config_flags: an override naming no key
        key = _unknown_override(argv)
        message = (config_checks.unknown_key_message(key, list(config_lib.KEYS)) if key
                   else f"bad config override: {e}")
    print(f"error: {message} (see --helpfull)", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def one_line(error: BaseException) -> str:
    """The error as one line: its message (first lines joined), with its type when
    it is not one of ours."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text if len(text) <= 600 else text[:600] + " ..."
    if isinstance(error, (ValueError, OSError, RuntimeError, FloatingPointError)):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}"


def report_error(error: BaseException, usage: bool, hint: str = TRACEBACK_HINT) -> int:
    """Prints `error: <one line>` (with `hint` after a runtime failure); returns the exit status."""
    print(f"error: {one_line(error)}{'' if usage else hint}", file=sys.stderr, flush=True)
    return USAGE_ERROR if usage else RUNTIME_ERROR


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors (an unknown option, a bad choice) are one line, exit 2."""

    def error(self, message: str):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def run(main: Callable[[list[str]], Any], module_name: str, **app_run_kwargs: Any) -> None:
    """`app.run(main, **app_run_kwargs)` with `parse_flags`, `--help` showing `module_name`'s
    docstring and flags."""
    module = sys.modules[module_name]
    sys.modules["__main__"].__doc__ = module.__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main, **{"flags_parser": parse_flags, **app_run_kwargs})
