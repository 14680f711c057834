"""A DeepSpeed engine behind the ``unlearn`` engine contract (``unlearn.engine.Engine``).

DeepSpeed already has the contract's semantics: ``backward`` scales by 1/accumulation steps,
``step`` updates at the accumulation boundary, gradients are averaged over data-parallel ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class DeepSpeedEngine:
    def __init__(self, engine):
        self.engine = engine
        self.accumulation_steps = int(engine.gradient_accumulation_steps())
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0

    @property
    def global_steps(self) -> int:
        return int(self.engine.global_steps)

    def __call__(self, **inputs):
        return self.engine(**inputs)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        self.engine.step()

    def all_reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return value
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def train(self, mode: bool = True):
        self.engine.train(mode)
        return self

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])
