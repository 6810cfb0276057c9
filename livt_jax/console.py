"""Console commands: one argparse convention, one-line errors and exit statuses.

Every command builds its parser with `command_parser` (its `--help` shows the
module docstring as written) and ends a failure with one line on stderr,
`error: ...`, and exit status `USAGE_ERROR` (2: an option, a config key or value,
an input that cannot work; nothing ran) or `RUNTIME_ERROR` (1: a failure while
running): `ArgumentParser.error` for the command line, `report_error` for an
exception.

A command that takes a config calls `add_config_options`: `--config NAME|PATH[:ARG]`
(a shipped config or a file, loaded and locked by `config_lib.load_config_file`)
and any number of overrides `--config.KEY=VALUE` (or `--config.KEY VALUE`; a
bare `--config.KEY` of a bool key sets it true), each VALUE parsed by the type of
the key's default in `config_lib.SCHEMA` (`parse_value`). `parse_args` then
returns the loaded config as `args.config` and the dotted keys the overrides
set as `args.overridden`.
"""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Any, Callable, Sequence

import ml_collections
from absl import flags, logging

from livt_jax import config_checks, config_lib
from livt_jax.config_rules import Key

USAGE_ERROR, RUNTIME_ERROR = 2, 1
TRACEBACK_HINT = " (rerun with --traceback for the full traceback)"
OVERRIDE_PREFIX = "--config."


# ----------------------------------------------------------------------------- errors

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


# ----------------------------------------------------------------------------- config overrides

def _parse_bool(text: str) -> bool:
    return {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}[text.lower()]


def _parse_tuple(text: str) -> tuple:
    value = ast.literal_eval(text)
    if isinstance(value, (tuple, list)):
        return tuple(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (value,)  # `--config.data.mean=0.5`: one channel
    raise ValueError(text)


# default's type -> (parser of a command-line value, what it expects)
_VALUE_PARSERS: dict[type, tuple[Callable[[str], Any], str]] = {
    bool: (_parse_bool, "a bool (true/false or 1/0)"),
    int: (int, "an integer"),
    float: (float, "a number"),
    str: (str, "a string"),
    tuple: (_parse_tuple, "a tuple such as '(0.5, 0.5, 0.5)'"),
}


class UsageError(ValueError):
    """A command-line option that cannot work; the message is one line."""


def _known(key: str) -> Key:
    """The schema entry of the dotted `key`; UsageError naming close keys when there is none."""
    if key not in config_lib.KEYS:
        raise UsageError(config_checks.unknown_key_message(key, list(config_lib.KEYS)))
    return config_lib.KEYS[key]


def parse_value(key: str, text: str) -> Any:
    """`text` as the value of the dotted config key `key`, by the type of its default in
    `config_lib.SCHEMA`. Raises UsageError for an unknown key or a value of another type."""
    parse, expected = _VALUE_PARSERS[type(_known(key).default)]
    try:
        return parse(text)
    except (ValueError, KeyError, SyntaxError, TypeError):
        raise UsageError(f"{OVERRIDE_PREFIX}{key}={text}: expected {expected}") from None


def split_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(the arguments that are not overrides, {dotted key: value text} of the overrides,
    the last one of a key winning). Raises UsageError for an override without a value."""
    rest, overrides, i = [], {}, 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest += argv[i:]
            break
        if not word.startswith(OVERRIDE_PREFIX):
            rest.append(word)
        elif "=" in word:
            key, _, value = word[len(OVERRIDE_PREFIX):].partition("=")
            overrides[key] = value
        else:
            key = word[len(OVERRIDE_PREFIX):]
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            if has_value:
                overrides[key] = argv[i + 1]
                i += 1
            elif isinstance(_known(key).default, bool):
                overrides[key] = "true"  # absl's bare boolean
            else:
                raise UsageError(f"{word} needs a value: {word}=VALUE")
        i += 1
    return rest, overrides


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, str]) -> None:
    """Sets each `{dotted key: value text}` on `config` (locked or not; a key holding a
    FieldReference has its reference set)."""
    for key, text in overrides.items():
        value = parse_value(key, text)
        *sections, name = key.split(".")
        section = config
        for part in sections:
            section = section[part]
        try:
            section[name] = value
        except TypeError as e:  # the config file gave the key a value of another type
            raise UsageError(f"{OVERRIDE_PREFIX}{key}={text}: {one_line(e)}") from None


def load_config(spec: str | None, overrides: dict[str, str]) -> ml_collections.ConfigDict | None:
    """The locked config of `spec` (`NAME|PATH[:ARG]`) with `overrides` applied; None
    without a spec. Raises UsageError (a file that does not load, a bad override)."""
    if spec is None:
        if overrides:
            raise UsageError(f"{OVERRIDE_PREFIX}{next(iter(overrides))} needs --config")
        return None
    try:
        config = config_lib.load_config_file(spec)
    except config_lib.ConfigFileError as e:
        raise UsageError(str(e)) from None
    apply_overrides(config, overrides)
    return config


# ----------------------------------------------------------------------------- parsers

class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors (an unknown option, a bad choice, a bad config override)
    are one line, exit 2; with `add_config_options`, `parse_args` loads the config."""

    takes_config = False

    def error(self, message: str):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(USAGE_ERROR)

    def parse_args(self, args=None, namespace=None):  # pylint: disable=arguments-differ
        """argparse's, and with a config option: `args.config` the loaded, locked config (None
        when no `--config` and no default) and `args.overridden` the keys set by overrides."""
        if not self.takes_config:
            return super().parse_args(args, namespace)
        try:
            rest, overrides = split_overrides(sys.argv[1:] if args is None else list(args))
        except UsageError as e:
            self.error(str(e))
        parsed = super().parse_args(rest, namespace)
        try:
            parsed.config = load_config(parsed.config, overrides)
        except UsageError as e:
            self.error(str(e))
        parsed.overridden = frozenset(overrides)
        return parsed


def command_parser(prog: str, doc: str) -> ArgumentParser:
    """The parser of the command `prog`; `--help` prints `doc` (the module docstring:
    usage and behaviour) as written, then the options."""
    return ArgumentParser(prog=prog, description=doc,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_config_options(parser: ArgumentParser, help_text: str, *, required: bool = False,
                       default: str | None = None) -> None:
    """`--config NAME|PATH[:ARG]` (shipped names: `config_lib.shipped_configs`) and the
    `--config.KEY=VALUE` overrides, loaded by `parser.parse_args`."""
    parser.takes_config = True
    parser.add_argument(
        "--config", metavar="NAME|PATH[:ARG]", required=required, default=default,
        help=f"{help_text} Shipped: {', '.join(config_lib.shipped_configs())}. Any key may be "
        "set with --config.KEY=VALUE (e.g. --config.finetune.optim.blr=5e-4), parsed by the "
        "type of its default.")


def add_run_options(parser: ArgumentParser) -> None:
    """`--traceback` and `-v/--verbosity` (see `init_logging`)."""
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, raise with the full traceback instead of one line")
    parser.add_argument("-v", "--verbosity", type=int, default=None, metavar="N",
                        help="absl logging verbosity: -1 warning (default), 0 info, 1 debug")


def init_logging(verbosity: int | None) -> None:
    """absl logging as absl's `app.run` set it up (its handler on the root logger, absl's
    flags marked parsed at their defaults, which grain's worker processes read) at
    `verbosity` (absl's scale; None: warnings, so orbax's INFO line per save is hidden)."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    logging.use_absl_handler()
    logging.set_verbosity(logging.WARNING if verbosity is None else verbosity)


# ----------------------------------------------------------------------------- argument types

def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `low`."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
        return value
    parse.__name__ = "int"  # argparse's "invalid int value: 'x'"
    return parse


def names_of(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names from `allowed`."""
    def parse(text: str) -> list[str]:
        names = text.split(",")
        if bad := [n for n in names if n not in allowed]:
            raise argparse.ArgumentTypeError(f"{bad[0]!r} is not one of {allowed}")
        return names
    return parse
