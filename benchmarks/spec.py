"""Benchmarks as typed values: metrics with directions, and the registry.

A metric's ``direction`` is ``"max"``, ``"min"`` or a target number (PrivLeak is best at 0); it
travels into every result row, so ``reports`` never needs to import ``benchmarks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Union

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


class Data(Protocol):
    """A benchmark's data, materialised on local disk (workers read it without network)."""

    root: Path
    chat: bool  # prompts go through the tokenizer's chat template (the collator applies it)

    def forget_examples(self) -> list[dict]:
        """Training examples of the forget set: ``{"text"}`` or ``{"question", "answer"}`` dicts,
        as :class:`unlearn.data.Collator` encodes them."""

    def retain_examples(self) -> list[dict]:
        """What the retain term trains on."""


class Benchmark(Protocol):
    """What the sweeps need from a benchmark (``synthetic``, ``muse``, ``rwku``, ``jsonl``).

    ``references`` runs once per sweep (``oracle`` may be ``None`` when the benchmark has no
    retrained model; oracle-relative metrics are then left out or use published constants); it
    returns a picklable object with a ``baseline`` dict (the target's own scores) and a writable
    ``npo_ref_nll`` attribute. ``evaluate`` returns flat ``{metric: value, metric_stderr: value}``
    for the requested ``parts`` (a subset of ``generation``, ``verbmem``, ``mia``, ``kl``,
    ``utility``; parts the benchmark has not are skipped). A benchmark with several unlearning
    targets (RWKU) gives its data a ``targets`` list and ``for_target(name)``; the sweep then runs
    every configuration once per target."""

    name: str
    undial_gammas: tuple

    @property
    def metrics(self) -> tuple[Metric, ...]: ...

    @property
    def chat(self) -> bool: ...

    def key(self) -> str: ...

    def materialize(self, cache: str | Path) -> Data: ...

    def read(self, root: str | Path) -> Data: ...

    def references(self, target, oracle, tokenizer, collate, data: Data, config) -> Any: ...

    def evaluate(self, model, tokenizer, collate, data: Data, refs, config, parts: tuple) -> dict: ...
