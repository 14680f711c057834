"""The registry and the fields every method shares (weights and the retain term)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from unlearn.refusals import qa_only
from unlearn.validate import check, is_number

RETAIN_TERMS = ("none", "nll", "kl", "hidden")
_REGISTRY: dict[str, type["MethodConfig"]] = {}


def register(name: str):
    """Class decorator: register a method config under a lowercase name (duplicates are an error)."""
    if name != name.lower():
        raise ValueError(f"method names are lowercase; got {name!r}")

    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type["MethodConfig"]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(names())}") from None


def trained_parameters(model, method: "MethodConfig") -> list:
    """The parameters ``method`` trains; every other one is frozen here (``requires_grad`` off), so
    an optimizer built over what this returns never sees them (RMU trains a few MLPs only)."""
    layers = int(model.config.num_hidden_layers)
    out = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and not method.trains(name, layers):
            parameter.requires_grad_(False)
        if parameter.requires_grad:
            out.append(parameter)
    return out


def make(name: str, params: dict | None = None) -> "MethodConfig":
    """Build a validated config; an unknown parameter is an error naming the allowed ones."""
    cls = get(name)
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params or {}) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} for method {name!r}; "
                         f"allowed: {', '.join(allowed)}")
    return cls(**(params or {}))


@dataclass(frozen=True)
class MethodConfig:
    """Shared fields. ``retain``: which retain term (none | nll | kl)."""

    forget_weight: float = 1.0
    retain_weight: float = 1.0
    retain: str = "none"

    name: ClassVar[str] = ""
    needs_ref_nll: ClassVar[bool] = False  # NPO, DPO: per-sequence reference NLLs, precomputed once
    needs_qa_forget: ClassVar[bool] = False  # trains on the forget set's question-answer examples only
    steers_hidden: ClassVar[bool] = False  # RMU: its terms are on the hidden states of ``layer_of(L)``

    def __post_init__(self):
        for name in ("forget_weight", "retain_weight"):
            value = getattr(self, name)
            check(is_number(value) and 0 <= value < math.inf, name, "a finite number >= 0", value)
        check(self.retain in RETAIN_TERMS, "retain", f"one of {', '.join(RETAIN_TERMS)}", self.retain)
        check(self.retain != "hidden" or self.steers_hidden, "retain",
              "none, nll or kl (hidden keeps the hidden states of a steered layer: rmu)", self.retain)

    def initial_state(self) -> dict:
        """What the method carries from step to step (PDU: its dual variable); saved with checkpoints."""
        return {}

    def next_state(self, state: dict, metrics: dict, epoch: int) -> dict:
        """The state after an update of epoch ``epoch`` (0-based) whose exact mean losses are ``metrics``."""
        return state

    def retain_weight_in(self, state: dict) -> float:
        """The retain term's weight for the next update."""
        return self.retain_weight

    def trains(self, name: str, num_layers: int) -> bool:
        """Whether the parameter ``name`` is trained (all are, unless the method selects some)."""
        return True

    @property
    def needs_ref_forget_logits(self) -> bool:
        """Whether the forget term needs the frozen initial model's logits."""
        return False

    @property
    def uses_retain(self) -> bool:
        return self.retain != "none" and self.retain_weight > 0

    @property
    def needs_ref_model(self) -> bool:
        return self.needs_ref_forget_logits or (self.uses_retain and self.retain in ("kl", "hidden"))

    def select_forget(self, examples: list[dict]) -> list[dict]:
        """The forget examples this method trains on (all, or the question-answer ones)."""
        if not self.needs_qa_forget:
            return examples
        chosen = qa_only(examples)
        if not chosen:
            raise ValueError(f"{self.name} needs question-answer forget examples; this forget set has none")
        return chosen

    def forget_views(self, examples: list[dict]) -> dict[str, list[dict]]:
        """What a batch of forget examples becomes: ``forget``, the batch the forget term is computed
        on, and for preference methods ``preferred``, the same questions with the preferred answers
        (both keep the examples' indices, by which reference NLLs are looked up)."""
        return {"forget": examples}

    def forget_loss(self, logits: Tensor, labels: Tensor, *, ref_logits: Tensor | None = None,
                    ref_logits_scratch: bool = False,
                    ref_sequence_nll: Tensor | None = None, preferred_logits: Tensor | None = None,
                    preferred_labels: Tensor | None = None, ref_preferred_nll: Tensor | None = None,
                    hidden: Tensor | None = None, positions: Tensor | None = None, control: Tensor | None = None,
                    num_tokens=None, num_sequences=None) -> Tensor:
        """The forget term. ``ref_logits_scratch``: ``ref_logits`` is the step's own temporary, which
        the loss may overwrite (UnDIAL writes its gradient's direction there)."""
        raise NotImplementedError

    def params(self) -> dict:
        return dataclasses.asdict(self)
