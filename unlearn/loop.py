"""The framework-free unlearning loop.

Epochs pass over the forget set in effective batches of ``micro_batch · accumulation_steps ·
world_size`` examples, each paired with a retain batch of the same size (the retain set is cycled
and reshuffled on each pass). The engine (``unlearn.engine``) owns accumulation and the schedule;
``report(metrics)`` is called after every optimizer step and ``on_epoch_end(epoch, state)`` after
every epoch (evaluation, checkpoints). A non-finite loss stops the run with :class:`Diverged`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from unlearn import step as steps
from unlearn.data import batches
from unlearn.methods.base import MethodConfig
from unlearn.validate import check, check_int, is_int


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class LoopConfig:
    epochs: int = 1
    micro_batch: int = 4
    max_steps: int | None = None
    seed: int = 0
    shuffle: bool = True
    start_epoch: int = 0  # epochs already done (resuming from a checkpoint taken at an epoch's end)
    method_state: dict | None = None  # the method's state at that checkpoint (PDU's dual variable)
    group_by_length: bool = False  # batches of examples of similar length (less padding; see data.batches)

    def __post_init__(self):
        check_int("epochs", self.epochs, 1)
        check_int("micro_batch", self.micro_batch, 1)
        check(self.max_steps is None or (is_int(self.max_steps) and self.max_steps >= 1),
              "max_steps", "an integer >= 1 or null", self.max_steps)
        check(is_int(self.start_epoch) and 0 <= self.start_epoch < self.epochs, "start_epoch",
              f"an integer in [0, epochs={self.epochs})", self.start_epoch)


@dataclass
class LoopState:
    step: int = 0
    epoch: int = 0
    metrics: dict = field(default_factory=dict)
    method_state: dict = field(default_factory=dict)  # what the method carries between updates


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def effective_batch(config: LoopConfig, engine) -> int:
    return config.micro_batch * engine.accumulation_steps * engine.world_size


def total_steps(num_forget: int, config: LoopConfig, effective: int) -> int:
    """Optimizer steps the run will take (for the learning-rate schedule)."""
    steps_total = math.ceil(num_forget / effective) * config.epochs
    return min(steps_total, config.max_steps) if config.max_steps else steps_total


def with_index(examples: list[dict]) -> list[dict]:
    """Give every example its position as ``index`` (how per-example references are looked up)."""
    return [dict(e, index=i) for i, e in enumerate(examples)]


def run(engine, method: MethodConfig, forget: list[dict], retain: list[dict], collate, config: LoopConfig,
        *, ref_model=None, ref_nll: dict | torch.Tensor | None = None, device="cpu",
        report: Callable[[dict], None] | None = None,
        on_epoch_end: Callable[[int, LoopState], None] | None = None) -> LoopState:
    """Unlearn ``forget`` (keeping ``retain`` through the method's retain term)."""
    if not forget:
        raise ValueError("forget set is empty")
    if method.uses_retain and not retain:
        raise ValueError(f"retain term {method.retain!r} needs a non-empty retain set")
    if method.needs_ref_model and ref_model is None:
        raise ValueError(f"{method.name} needs ref_model (a frozen copy of the initial model)")
    set_seed(config.seed)
    forget = method.select_forget(forget if all("index" in e for e in forget) else with_index(forget))
    if method.needs_ref_nll and ref_nll is None:
        # The model has not been updated yet: it *is* θ0, so no second model is needed.
        engine.train(False)
        ref_nll = steps.reference_nlls(engine, method, forget, collate, batch_size=config.micro_batch, device=device)
    size = effective_batch(config, engine)
    forget_lengths = _lengths(collate, forget, config)
    retain_stream = _cycle(retain, size, config, _lengths(collate, retain, config)) if method.uses_retain else None
    per_epoch = math.ceil(len(forget) / size)
    state = LoopState(step=config.start_epoch * per_epoch, epoch=config.start_epoch,
                      method_state=dict(config.method_state or method.initial_state()))
    for _ in range(state.step if retain_stream else 0):  # the retain batches the done epochs used
        next(retain_stream)
    for epoch in range(config.start_epoch, config.epochs):
        engine.train(True)
        for examples in batches(forget, size, shuffle=config.shuffle, seed=config.seed, epoch=epoch,
                                lengths=forget_lengths):
            paired = next(retain_stream) if retain_stream else None
            lr = engine.lr()  # the rate this update uses
            state.metrics = update(engine, method, examples, paired, collate, ref_model=ref_model,
                                   ref_nll=ref_nll, device=device, seed=config.seed, method_state=state.method_state)
            state.method_state = method.next_state(state.method_state, state.metrics, epoch)
            state.step += 1
            state.metrics.update(state.method_state, step=state.step, epoch=epoch + 1, lr=lr)
            if report:
                report(dict(state.metrics))
            if config.max_steps and state.step >= config.max_steps:
                break
        state.epoch = epoch + 1
        if on_epoch_end:
            engine.train(False)
            on_epoch_end(state.epoch, state)
        if config.max_steps and state.step >= config.max_steps:
            break
    return state


def _lengths(collate, examples: list[dict], config: LoopConfig) -> list[int] | None:
    """Token counts of ``examples`` when batches are grouped by length, else None."""
    if not config.group_by_length:
        return None
    return [len(collate.encode(e)[0]) for e in examples]


def _cycle(examples: list[dict], size: int, config: LoopConfig,
           lengths: list[int] | None = None) -> Iterator[list[dict]]:
    """Retain batches of exactly ``size`` examples, forever, reshuffled on each pass (grouped by
    length within a pass when ``lengths`` are given)."""
    buffer: list[dict] = []
    epoch = 0
    while True:
        while len(buffer) < size:
            for chunk in batches(examples, size if lengths else len(examples), shuffle=config.shuffle,
                                 seed=config.seed + 1, epoch=epoch, lengths=lengths):
                buffer.extend(chunk)
            epoch += 1
        yield buffer[:size]
        buffer = buffer[size:]


def shard(examples: list[dict], engine) -> list[list[dict]]:
    """This rank's micro-batches of one effective batch (``accumulation_steps`` lists; may be empty
    when the last batch of an epoch is short)."""
    slots = engine.accumulation_steps * engine.world_size
    parts = [examples[k::slots] for k in range(slots)]
    start = engine.rank * engine.accumulation_steps
    return parts[start:start + engine.accumulation_steps]


def _collate(collate, micro: list[dict], fallback: dict, device) -> dict:
    """Collate a micro-batch; an empty one (short last batch) becomes a fully masked example, so
    every rank still runs the same forward/backward passes and contributes nothing."""
    if micro:
        return steps.to_device(collate(micro), device)
    batch = collate([fallback])
    batch["labels"] = torch.full_like(batch["labels"], -100)
    return steps.to_device(batch, device)


def update(engine, method: MethodConfig, forget: list[dict], retain: list[dict] | None, collate, *,
           ref_model=None, ref_nll=None, device="cpu", seed: int = 0, method_state: dict | None = None) -> dict:
    """One optimizer step over an effective batch; returns its exact mean losses."""
    views = {view: [_collate(collate, m, items[0], device) for m in shard(items, engine)]
             for view, items in method.forget_views(forget).items()}
    forget_mbs = views["forget"]
    preferred_mbs = views.get("preferred", [None] * len(forget_mbs))
    retain_mbs = ([_collate(collate, m, retain[0], device) for m in shard(retain, engine)]
                  if retain else [None] * len(forget_mbs))
    forget_tokens = sum(steps.count_tokens(b) for b in forget_mbs)
    counts = torch.stack([  # on the batches' device (a GPU's when training there)
        forget_tokens,
        sum(steps.count_sequences(b) for b in forget_mbs),
        sum(steps.count_tokens(b) for b in retain_mbs) if retain else torch.zeros_like(forget_tokens),
    ]).double().to(device)
    counts = engine.all_reduce_sum(counts)
    per = [steps.divisor(c.clamp(min=1), engine.accumulation_steps, engine.world_size) for c in counts]
    divisors = steps.Divisors(*per)
    sums: dict[str, torch.Tensor] = {}
    for f_batch, p_batch, r_batch in zip(forget_mbs, preferred_mbs, retain_mbs):
        loss, parts = steps.loss_terms(engine, method, f_batch, r_batch, preferred=p_batch, ref_model=ref_model,
                                       ref_nll=ref_nll, divisors=divisors, seed=seed, method_state=method_state)
        engine.backward(loss)
        engine.step()
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + value.double()
    names = sorted(sums)
    totals = engine.all_reduce_sum(torch.stack([sums[n] for n in names]).to(device))
    totals = totals / (engine.accumulation_steps * engine.world_size)
    metrics = {n: float(v) for n, v in zip(names, totals)}
    if not all(math.isfinite(v) for v in metrics.values()):
        raise Diverged(f"non-finite loss after step {engine.global_steps}: {metrics}")
    return metrics
