"""The rules a config key's value must follow (`config_lib.SCHEMA` attaches one per key):
a closed set of values (`one_of`) or an interval (`Interval`, `at_least`, `above`), and
`Key`, the declaration of one key (default, rule, whether a resume may change it).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Optional, Union


@dataclasses.dataclass(frozen=True)
class OneOf:
    """The value is one of `values`, or a name in `names_in` ('module.NAME' under
    livt_jax: a tuple or dict owned by the code that uses the value)."""
    values: tuple = ()
    names_in: str = ""

    def allowed(self) -> tuple:
        if not self.names_in:
            return self.values
        module, _, name = self.names_in.rpartition(".")
        return self.values + tuple(getattr(importlib.import_module(f"livt_jax.{module}"), name))

    def problem(self, key: str, value: Any) -> Optional[str]:
        allowed = self.allowed()
        return None if value in allowed else f"{key}={value!r}; expected one of {allowed}"


@dataclasses.dataclass(frozen=True)
class Interval:
    """The value lies in an interval written as in mathematics: '(0, 1]', '[0, inf)'."""
    text: str
    hint: str = ""  # why, appended to the message

    def problem(self, key: str, value: Any) -> Optional[str]:
        low_mark, low, high, high_mark = re.fullmatch(
            r"([\[(])(\S+), (\S+)([\])])", self.text).groups()
        low, high = float(low), float(high)
        inside = ((value > low or (low_mark == "[" and value == low))
                  and (value < high or (high_mark == "]" and value == high)))
        if inside:
            return None
        if high == float("inf"):
            bound = f"{'>=' if low_mark == '[' else '>'} {low:g}"
        else:
            bound = f"in {self.text}"
        return f"{key}={value} must be {bound}" + (f" ({self.hint})" if self.hint else "")


Rule = Union[OneOf, Interval]


def one_of(*values, names_in: str = "") -> OneOf:
    return OneOf(tuple(values), names_in)


def at_least(low: float, hint: str = "") -> Interval:
    return Interval(f"[{low:g}, inf)", hint)


def above(low: float, hint: str = "") -> Interval:
    return Interval(f"({low:g}, inf)", hint)


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key. `rule`: what its value must satisfy (None: any value of its type).
    `may_change`: a resumed run may give it another value (it does not change what is
    trained: logging, checkpoint cadence, data location, device layout, kernels)."""
    default: Any
    rule: Optional[Rule] = None
    may_change: bool = False


FREE = dict(may_change=True)  # shorthand for keys a resume may change


