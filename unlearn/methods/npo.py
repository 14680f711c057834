"""NPO (Zhang et al. 2024): ``L = mean_s −(2/β) log σ(β (NLL_θ(s) − NLL_ref(s)))``.

``NLL_ref`` depends only on the data: it is computed once before training and looked up per batch,
so no second model is kept in memory."""

from dataclasses import dataclass
from typing import ClassVar

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.validate import check_number


@register("npo")
@dataclass(frozen=True)
class NPO(MethodConfig):
    beta: float = 0.1
    needs_ref_nll: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        check_number("beta", self.beta, strict=True)

    def forget_loss(self, logits, labels, *, ref_sequence_nll=None, num_sequences=None, **_):
        if ref_sequence_nll is None:
            raise ValueError("npo needs ref_sequence_nll (precompute it with unlearn.step.reference_sequence_nll)")
        return losses.npo(logits, labels, ref_sequence_nll, self.beta, num_sequences=num_sequences)
