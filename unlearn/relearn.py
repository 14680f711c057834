"""Relearning attack: fine-tune an unlearned model with plain NLL on a few forget examples, then
measure the forget metrics again on the forget probes those examples do not cover.

``θ' = θ − lr · AdamW(∇ NLL(θ; chosen forget examples))`` for ``steps`` updates, from fresh optimizer
moments at a constant rate. The examples are chosen deterministically and by group (a benchmark's
unit of knowledge, e.g. a person): whole groups first, in a seeded order, so that as many groups as
possible stay untouched, and the probes of the untouched groups are the held-back ones
(:func:`choose`). ``examples: all`` relearns the whole forget set and scores every probe.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from unlearn import finetune, loop
from unlearn.validate import check, check_keys, fail, is_int, is_number

ALL = "all"
FIELDS = ("examples", "steps", "lr")
SEED = 0  # the choice of examples and the batches: the same for every trial and the target


@dataclass(frozen=True)
class RelearnConfig:
    """``examples``: how many forget examples (an integer >= 1, or ``all``); ``steps``: optimizer
    updates; ``lr``: their learning rate."""

    examples: int | str
    steps: int
    lr: float

    def __post_init__(self):
        check(self.examples == ALL or (is_int(self.examples) and self.examples >= 1), "eval.relearn.examples",
              f"an integer >= 1 or {ALL!r}", self.examples)
        check(is_int(self.steps) and self.steps >= 1, "eval.relearn.steps", "an integer >= 1", self.steps)
        check(is_number(self.lr) and self.lr > 0, "eval.relearn.lr", "a number > 0", self.lr)

    @classmethod
    def of(cls, raw) -> RelearnConfig:
        """From the spec's ``eval.relearn`` mapping (every field given, no other key)."""
        if isinstance(raw, cls):
            return raw
        if not isinstance(raw, dict):
            fail("eval.relearn", f"a mapping with keys {', '.join(FIELDS)}", raw)
        check_keys("eval.relearn", raw, FIELDS)
        for key in FIELDS:
            if key not in raw:
                fail(f"eval.relearn.{key}", "given", None)
        return cls(**raw)


@dataclass(frozen=True)
class Choice:
    """The chosen examples (indices into the forget set) and the groups none of them belongs to
    (``None``: every example is chosen, so every probe is scored)."""

    indices: tuple
    heldout: tuple | None


def choose(size: int, examples: int | str, groups: list | None = None, seed: int = SEED) -> Choice:
    """Which of ``size`` forget examples to relearn on. ``groups`` gives each example's group (None:
    the benchmark cannot tell which probes an example covers, and only the whole set can be
    relearned). Groups are taken whole in a seeded order, each one's examples in a seeded order, and
    the first ``examples`` are chosen; the groups left untouched are held back. A ``ValueError``
    names ``eval.relearn.examples`` when the count is impossible."""
    if examples == ALL or examples == size:
        return Choice(tuple(range(size)), None)
    if examples > size:
        fail("eval.relearn.examples", f"at most the forget set's {size} examples, or {ALL!r}", examples)
    if groups is None:
        fail("eval.relearn.examples", f"{ALL!r}: this benchmark cannot say which probes a forget example covers, so "
             "no probe can be held back", examples)
    if len(groups) != size:
        raise ValueError(f"{len(groups)} groups for {size} forget examples")
    rng = random.Random(seed)
    order = list(dict.fromkeys(groups))
    rng.shuffle(order)
    members = {g: [i for i, h in enumerate(groups) if h == g] for g in order}
    for g in order:
        rng.shuffle(members[g])
    ranked = [i for g in order for i in members[g]]
    chosen = ranked[:examples]
    touched = {groups[i] for i in chosen}
    heldout = tuple(g for g in order if g not in touched)
    if not heldout:
        most = size - len(members[order[-1]])
        fail("eval.relearn.examples", f"at most {most} (to leave a group's probes held back) or {ALL!r}", examples)
    return Choice(tuple(sorted(chosen)), heldout)


def relearn(engine, examples: list[dict], collate, config: RelearnConfig, *, micro_batch: int,
            device="cpu") -> loop.LoopState:
    """``config.steps`` NLL updates of ``engine`` on ``examples`` (cycled in shuffled passes), in the
    engine's effective batch. The engine's optimizer must already have the relearning rate and
    fresh moments (:func:`reset_optimizer`)."""
    size = micro_batch * engine.accumulation_steps * engine.world_size
    per_epoch = math.ceil(len(examples) / size)
    settings = loop.LoopConfig(epochs=math.ceil(config.steps / per_epoch), micro_batch=micro_batch,
                               max_steps=config.steps, seed=SEED)
    state = finetune.finetune(engine, loop.with_index(examples), collate, settings, device=device)
    engine.train(False)
    return state


def reset_optimizer(optimizer, lr: float) -> None:
    """Fresh AdamW moments and a constant ``lr``: ``optimizer`` is a torch optimizer or a wrapper of
    one (DeepSpeed's ZeRO optimizers keep it as ``.optimizer``)."""
    inner = optimizer
    while hasattr(inner, "optimizer") and inner.optimizer is not inner:
        inner = inner.optimizer
    inner.state.clear()  # re-created on the next step
    for group in inner.param_groups:
        group["lr"] = lr
        if "initial_lr" in group:
            group["initial_lr"] = lr
