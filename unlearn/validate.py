"""Checks of user input, each failing with one line: ``<field> must be <allowed>; got <value!r>``."""

from __future__ import annotations

import numbers
import re
from typing import NoReturn


class ValidationError(ValueError):
    """Bad input: the message names the field and what is allowed."""


def fail(field: str, allowed: str, value) -> NoReturn:
    shown = re.sub(r"\n\s*", " ", repr(value))  # an array's repr spans lines
    raise ValidationError(f"{field} must be {allowed}; got {shown}")


def check(condition: bool, field: str, allowed: str, value) -> None:
    """:func:`fail` unless ``condition`` holds."""
    if not condition:
        fail(field, allowed, value)


def check_keys(field: str, mapping: dict, allowed) -> None:
    """Every key of ``mapping`` among ``allowed``: one line naming ``<field>.<key>`` otherwise."""
    for key in mapping:
        if key not in allowed:
            fail(f"{field}.{key}", f"one of {', '.join(allowed)} (unknown key)", key)


def is_int(value) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(field: str, value, low: int, high: int | None = None) -> None:
    """An int in ``[low, high]`` (no upper bound when ``high`` is None)."""
    check(is_int(value) and value >= low and (high is None or value <= high), field,
          f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]", value)


def check_number(field: str, value, low: float = 0, *, strict: bool = False) -> None:
    """A number >= ``low`` (> ``low`` when ``strict``)."""
    check(is_number(value) and (value > low if strict else value >= low), field,
          f"a number {'>' if strict else '>='} {low:g}", value)
