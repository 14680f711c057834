"""Unilogit (ACL 2025): ``L = mean_tokens KL(p_θ ‖ sg(q))``, ``q_y = 1/V``, other ratios kept.

Ablations: ``target: current | initial`` (soft label from the current model, or from θ0) and
``divergence: reverse | forward``."""

from dataclasses import dataclass

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.validate import check

TARGETS = ("current", "initial")


@register("unilogit")
@dataclass(frozen=True)
class Unilogit(MethodConfig):
    target: str = "current"
    divergence: str = "reverse"

    def __post_init__(self):
        super().__post_init__()
        check(self.target in TARGETS, "target", f"one of {', '.join(TARGETS)}", self.target)
        check(self.divergence in losses.DIVERGENCES, "divergence",
              f"one of {', '.join(losses.DIVERGENCES)}", self.divergence)

    @property
    def needs_ref_forget_logits(self) -> bool:
        return self.target == "initial"

    def forget_loss(self, logits, labels, *, ref_logits=None, num_tokens=None, **_):
        if self.target == "initial" and ref_logits is None:
            raise ValueError("unilogit with target='initial' needs ref_logits from the initial model")
        ref = ref_logits if self.target == "initial" else None
        return losses.unilogit(logits, labels, ref, self.divergence, num_tokens=num_tokens)
