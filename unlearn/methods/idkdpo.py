"""IdkDPO (Rafailov et al. 2023's DPO with refusals as the preferred answers, as in TOFU and
open-unlearning): ``L = mean_s −(2/β) log σ(β [(NLL_ref(w) − NLL_θ(w)) − (NLL_ref(l) − NLL_θ(l))])``
with ``w`` the question answered by a refusal (:mod:`unlearn.refusals`), ``l`` by the forget
answer, and summed per-sequence NLLs. Both reference NLLs depend only on the data: they are
computed once before training, as NPO's are, so no second model is kept. Needs question-answer
forget examples. ``beta`` default 0.1, open-unlearning's DPO default."""

from dataclasses import dataclass
from typing import ClassVar

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.refusals import with_refusals
from unlearn.validate import check_number


@register("idkdpo")
@dataclass(frozen=True)
class IdkDPO(MethodConfig):
    beta: float = 0.1
    needs_ref_nll: ClassVar[bool] = True
    needs_qa_forget: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        check_number("beta", self.beta, strict=True)

    def forget_views(self, examples):
        return {"forget": examples, "preferred": with_refusals(examples)}

    def forget_loss(self, logits, labels, *, preferred_logits=None, preferred_labels=None, ref_sequence_nll=None,
                    ref_preferred_nll=None, num_sequences=None, **_):
        if preferred_logits is None or ref_sequence_nll is None or ref_preferred_nll is None:
            raise ValueError("idkdpo needs the preferred (refusal) batch's logits and both reference NLLs")
        return losses.dpo(preferred_logits, preferred_labels, logits, labels, ref_preferred_nll, ref_sequence_nll,
                          self.beta, num_sequences=num_sequences)
