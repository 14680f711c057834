"""SatImp (Yang et al., ICML 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning",
arXiv 2505.11953): ``L = mean_tokens sg(p_y^β1 (1 − p_y)^β2) · log p_y``.

The weight combines saturation (``p_y^β1``) and importance (``(1 − p_y)^β2``). Defaults
``beta1=5.0``, ``beta2=1.0``: open-unlearning's trainer config (configs/trainer/SatImp.yaml)."""

from dataclasses import dataclass

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.validate import check_number


@register("satimp")
@dataclass(frozen=True)
class SatImp(MethodConfig):
    beta1: float = 5.0
    beta2: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        check_number("beta1", self.beta1)
        check_number("beta2", self.beta2)

    def forget_loss(self, logits, labels, *, num_tokens=None, **_):
        return losses.satimp(logits, labels, self.beta1, self.beta2, num_tokens=num_tokens)
