"""GA, gradient ascent on the forget set: ``L = −mean_tokens(−log p_y)``."""

from dataclasses import dataclass

from unlearn import losses
from unlearn.methods.base import MethodConfig, register


@register("ga")
@dataclass(frozen=True)
class GA(MethodConfig):
    def forget_loss(self, logits, labels, *, num_tokens=None, **_):
        return losses.ga(logits, labels, num_tokens=num_tokens)
