"""The benchmark contract: metrics with direction, role and scale; figures; a selection rule; the
registry. Everything a benchmark declares travels with the results (``declaration``), so that
``reports`` derives its tables and figures from the record and never imports ``benchmarks``.

A metric's ``direction`` is ``"max"``, ``"min"`` or a target number (PrivLeak is best at 0); its
``role`` says what it measures (``forget``, ``retain``, ``neighbour``, ``utility``, ``privacy``,
``kl``); its ``scale`` is 1 (values in [0, 1]) or 100 (a paper's ×100 tables).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Union

from unlearn.validate import check, is_number

Direction = Union[str, float]
ROLES = ("forget", "retain", "neighbour", "utility", "privacy", "kl")
SCALES = (1, 100)


@dataclass(frozen=True)
class Metric:
    name: str
    direction: Direction
    role: str
    description: str
    scale: int = 1

    def __post_init__(self):
        check(self.direction in ("max", "min") or is_number(self.direction), f"direction of {self.name}",
              "'max', 'min' or a target number", self.direction)
        check(self.role in ROLES, f"role of {self.name}", f"one of {', '.join(ROLES)}", self.role)
        check(self.scale in SCALES, f"scale of {self.name}", "1 or 100", self.scale)


@dataclass(frozen=True)
class Front:
    """A forget-vs-survive figure: ``x`` a forget metric, ``y`` what must survive, ``size`` an
    optional third metric drawn as marker size."""

    x: str
    y: str
    size: str | None = None


@dataclass(frozen=True)
class Selection:
    """The rule that picks one configuration per method: among finished configurations at their
    final epoch, those whose ``forget`` is at most the oracle's + ``oracle_tolerance`` × scale (with
    an oracle), else at most ``target_fraction`` × the target's; and whose every ``floors`` metric
    is at least its fraction × the target's value; the highest ``retain`` wins."""

    forget: str
    retain: str
    oracle_tolerance: float = 0.05
    target_fraction: float = 0.5
    floors: dict = field(default_factory=dict)  # metric -> fraction of the target's value


@dataclass(frozen=True)
class Declaration:
    """What a benchmark declares besides its metrics."""

    needs_oracle: bool
    can_prepare: bool
    fronts: tuple  # (Front, ...)
    trajectories: tuple  # metric names
    selection: Selection
    average_over: tuple = ()  # row labels the reports average over (RWKU's ``subject``)
    protocol: str = ""  # the named evaluation protocol the numbers follow (RWKU's ``paper`` / ``clean``)
    forget_qa: bool = False  # the forget set holds question-answer examples (what the IdK methods need)
    cannot_train: str = ""  # why a sweep cannot train on it as configured (one line; WMDP without a corpus)
    # What groups the forget set (a person): its data then has ``forget_groups()`` and
    # ``with_forget_groups(groups)`` (see ``Data``), and relearning can hold back the probes of the
    # groups it does not train on. Empty: relearning takes the whole forget set.
    forget_groups: str = ""
    # The parameters that change which examples are forgotten (and so what a retrained oracle was
    # trained without): a sweep that grids one of them with a given ``model.oracle`` names one oracle
    # per grid point.
    oracle_params: tuple = ()


def check_declaration(name: str, metrics: tuple, declared: Declaration) -> None:
    """Every metric the declaration names exists with a fitting direction (a ValueError otherwise)."""
    by_name = {m.name: m for m in metrics}
    used = [m for f in declared.fronts for m in (f.x, f.y, f.size) if m] + list(declared.trajectories)
    rule = declared.selection
    used += [rule.forget, rule.retain, *rule.floors]
    missing = sorted({m for m in used if m not in by_name})
    if missing:
        raise ValueError(f"benchmark {name!r} declares {missing[0]!r}, which is not one of its metrics")
    if by_name[rule.forget].direction != "min":
        raise ValueError(f"benchmark {name!r}: the selection's forget metric must have direction 'min'")
    for metric in (rule.retain, *rule.floors):
        if by_name[metric].direction != "max":
            raise ValueError(f"benchmark {name!r}: selection metric {metric!r} must have direction 'max'")


def declaration(benchmark, metrics: tuple) -> dict:
    """The JSON record of a benchmark: its metrics and declarations (``reference_rows.json``)."""
    declared: Declaration = benchmark.declared
    rule = declared.selection
    return {
        "name": benchmark.name,
        "needs_oracle": declared.needs_oracle,
        "metrics": {m.name: {"direction": m.direction, "role": m.role, "scale": m.scale,
                             "description": m.description} for m in metrics},
        "fronts": [asdict(f) for f in declared.fronts],
        "trajectories": list(declared.trajectories),
        "selection": {**asdict(rule), "floors": dict(rule.floors)},
        "average_over": list(declared.average_over),
        "protocol": declared.protocol,
        "facets": [],
    }


_REGISTRY: dict[str, Callable] = {}


def register(name: str):
    def wrap(factory):
        if name in _REGISTRY:
            raise ValueError(f"benchmark {name!r} is already registered")
        if name != name.lower():
            raise ValueError(f"benchmark names are lowercase; got {name!r}")
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

    # A benchmark that declares ``forget_groups`` also gives its data
    # ``forget_groups() -> list[str]``: each forget example's group, in ``forget_examples()``'s order;
    # and ``with_forget_groups(groups) -> Data``: the same data whose forget probes are those of
    # ``groups`` only (what a relearning attack that trained on the other groups is scored on).


class Preparable(Protocol):
    """The data of a benchmark that can prepare a target and an oracle from a base model."""

    def train_examples(self, *, with_forget: bool, utility: bool) -> list[dict]:
        """The fine-tuning corpus of the target (``with_forget``) or of the oracle (without it);
        ``utility`` adds general-knowledge examples (a model trained from scratch)."""

    def check_probes(self, *, with_forget: bool) -> list:
        """Probes whose recall says the training took (``Benchmark.recall`` scores them)."""

    def forget_probes(self) -> list:
        """Probes of the forget set (recorded: how much the target / oracle know of it)."""

    def corpus_texts(self) -> list[str]:
        """Every text a from-scratch tokenizer must cover."""


class Benchmark(Protocol):
    """What the sweeps need from a benchmark (``synthetic``, ``muse``, ``rwku``, ``jsonl`` …).

    ``references`` runs once per sweep (``oracle`` may be ``None`` when the benchmark has no
    retrained model); it returns a picklable object with a ``baseline`` dict (the target's own
    scores). ``evaluate`` returns flat ``{metric: value, metric_stderr: value}`` for the requested
    ``parts`` (a subset of ``common.PARTS``; parts the benchmark has not are skipped). A benchmark
    with several unlearning targets (RWKU) gives its data a ``targets`` list and
    ``for_target(name)``; the sweep then runs every configuration once per target. A benchmark whose
    ``declared.can_prepare`` is true also has ``recall(model, tokenizer, collate, data, probes,
    config) -> list[float]`` and data of the :class:`Preparable` shape."""

    name: str
    declared: Declaration

    def metrics(self, config=None) -> tuple[Metric, ...]: ...

    @property
    def chat(self) -> bool: ...

    def key(self) -> str: ...

    def materialize(self, cache: str | Path) -> Data: ...

    def read(self, root: str | Path) -> Data: ...

    def references(self, target, oracle, tokenizer, collate, data: Data, config) -> Any: ...

    def evaluate(self, model, tokenizer, collate, data: Data, refs, config, parts: tuple) -> dict: ...
