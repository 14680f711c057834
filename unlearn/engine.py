"""The engine contract of the training loop, and a plain-torch engine that implements it.

An engine is called like the model (forward), and owns gradient accumulation, the optimizer and
the learning-rate schedule, with DeepSpeed's semantics so that both behave the same:
``backward(loss)`` accumulates the gradient of ``loss / accumulation_steps``; ``step()`` is called
after every micro-batch and updates the weights only at an accumulation boundary; gradients are
averaged over ``world_size`` data-parallel ranks. ``all_reduce_sum`` sums a tensor over ranks.
The loop never scales a loss itself (see ``unlearn.step.divisor``).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn


class Engine(Protocol):
    accumulation_steps: int
    world_size: int
    rank: int
    global_steps: int

    def __call__(self, **inputs): ...
    def backward(self, loss: Tensor) -> None: ...
    def step(self) -> None: ...
    def all_reduce_sum(self, value: Tensor) -> Tensor: ...
    def train(self, mode: bool = True): ...
    def lr(self) -> float: ...


class PlainEngine:
    """Single-process engine: same contract as DeepSpeed (for tests and quick local runs)."""

    world_size = 1
    rank = 0

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 accumulation_steps: int = 1, scheduler=None, max_grad_norm: float | None = None):
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1; got {accumulation_steps}")
        self.module = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.accumulation_steps = accumulation_steps
        self.max_grad_norm = max_grad_norm
        self.global_steps = 0
        self.micro_steps = 0

    def __call__(self, **inputs):
        return self.module(**inputs)

    def train(self, mode: bool = True):
        self.module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def backward(self, loss: Tensor) -> None:
        (loss / self.accumulation_steps).backward()

    def step(self) -> None:
        self.micro_steps += 1
        if self.micro_steps % self.accumulation_steps:
            return
        if self.max_grad_norm:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_steps += 1

    def all_reduce_sum(self, value: Tensor) -> Tensor:
        return value

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])
