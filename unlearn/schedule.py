"""Learning-rate schedules as ``LambdaLR`` multipliers: linear warm-up, then constant, linear
decay to 0, or cosine decay to 0. The same object drives the plain engine and DeepSpeed."""

from __future__ import annotations

import math

import torch

from unlearn.validate import check

SCHEDULES = ("constant", "linear", "cosine")


def multiplier(kind: str, total_steps: int, warmup_steps: int = 0):
    """``step -> lr factor`` for ``torch.optim.lr_scheduler.LambdaLR``."""
    check(kind in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}", kind)
    check(total_steps >= 1 and 0 <= warmup_steps <= total_steps, "warmup_steps", f"in [0, total_steps={total_steps}]",
          warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(progress, 1.0)
        return 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def scheduler(optimizer, kind: str, total_steps: int, warmup_steps: int = 0):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier(kind, total_steps, warmup_steps))
