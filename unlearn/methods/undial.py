"""UnDIAL (Dong et al. 2024): ``L = mean_tokens KL(softmax(z_θ0 − γ·onehot(y)) ‖ p_θ)``."""

from dataclasses import dataclass

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.validate import check_number


@register("undial")
@dataclass(frozen=True)
class UnDIAL(MethodConfig):
    gamma: float = 10.0

    def __post_init__(self):
        super().__post_init__()
        check_number("gamma", self.gamma)

    @property
    def needs_ref_forget_logits(self) -> bool:
        return True

    def forget_loss(self, logits, labels, *, ref_logits=None, ref_logits_scratch=False, num_tokens=None, **_):
        if ref_logits is None:
            raise ValueError("undial needs ref_logits from the frozen initial model")
        return losses.undial(logits, ref_logits, labels, self.gamma, num_tokens=num_tokens,
                             ref_scratch=ref_logits_scratch)
