"""WGA, weighted gradient ascent (Wang et al., ICLR 2025, "Rethinking LLM Unlearning Objectives: A
Gradient Perspective and Go Beyond", arXiv 2502.19301): ``L = mean_tokens sg(p_y^β) · log p_y``.

β = 0 is GA; a larger β focuses the ascent on the tokens the model still predicts well. Default
``beta=1.0``: open-unlearning's trainer config (configs/trainer/WGA.yaml)."""

from dataclasses import dataclass

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.validate import check_number


@register("wga")
@dataclass(frozen=True)
class WGA(MethodConfig):
    beta: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        check_number("beta", self.beta)

    def forget_loss(self, logits, labels, *, num_tokens=None, **_):
        return losses.wga(logits, labels, self.beta, num_tokens=num_tokens)
