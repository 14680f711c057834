"""Plain NLL fine-tuning through the unlearning loop itself (same engine contract, batching and
exact reductions): teaches a model the facts it will later unlearn, and trains the retrained
"oracle" the same way. ``loss`` = mean token NLL over the effective batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

from unlearn import loop, losses
from unlearn.methods.base import MethodConfig


@dataclass(frozen=True)
class NLLTraining(MethodConfig):
    """Not an unlearning method (so not registered): descend the NLL of the training set."""

    name: ClassVar[str] = "finetune"

    def forget_loss(self, logits, labels, *, num_tokens=None, **_):
        return losses.nll(logits, labels, num_tokens=num_tokens)


def finetune(engine, examples: list[dict], collate, config: loop.LoopConfig, *, device="cpu",
             report: Callable[[dict], None] | None = None,
             on_epoch_end: Callable[[int, loop.LoopState], None] | None = None) -> loop.LoopState:
    return loop.run(engine, NLLTraining(), examples, [], collate, config, device=device, report=report,
                    on_epoch_end=on_epoch_end)
