"""ME, maximum entropy (Yuan et al., ICLR 2025, "A Closer Look at Machine Unlearning for Large Language
Models", arXiv 2410.08109): ``L = mean_tokens KL(U_V ‖ p_θ)``, pushing each answer position of the
forget set toward the uniform distribution. No parameters of its own (the paper pairs it with a
retain term; choose one with ``retain``)."""

from dataclasses import dataclass

from unlearn import losses
from unlearn.methods.base import MethodConfig, register


@register("me")
@dataclass(frozen=True)
class ME(MethodConfig):
    def forget_loss(self, logits, labels, *, num_tokens=None, **_):
        return losses.max_entropy(logits, labels, num_tokens=num_tokens)
