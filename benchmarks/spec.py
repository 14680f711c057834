"""Benchmarks as typed values: metrics with directions, and the registry.

A metric's ``direction`` is ``"max"``, ``"min"`` or a target number (PrivLeak is best at 0); it
travels into every result row, so ``reports`` never needs to import ``benchmarks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

Direction = Union[str, float]


@dataclass(frozen=True)
class Metric:
    name: str
    direction: Direction
    description: str
    per_epoch: bool = True  # cheap enough to evaluate after every epoch

    def __post_init__(self):
        if not (self.direction in ("max", "min") or isinstance(self.direction, (int, float))):
            raise ValueError(f"direction of {self.name} must be 'max', 'min' or a target number; "
                             f"got {self.direction!r}")


_REGISTRY: dict[str, Callable] = {}


def register(name: str):
    def wrap(factory):
        if name in _REGISTRY:
            raise ValueError(f"benchmark {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, **params):
    """The benchmark ``name`` built with ``params`` (validated by the benchmark itself)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(names())}") from None
    return factory(**params)
