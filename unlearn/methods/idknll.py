"""IdkNLL (Maini et al. 2024, TOFU's "I don't know" baseline): the forget questions are answered
with refusals and the model is trained on them, ``L = NLL_θ(refusal | question)`` (token mean).
Needs question-answer forget examples; the refusal of each comes from :mod:`unlearn.refusals`.
No parameters of its own (as in open-unlearning's ``IdkNLL`` trainer)."""

from dataclasses import dataclass
from typing import ClassVar

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.refusals import with_refusals


@register("idknll")
@dataclass(frozen=True)
class IdkNLL(MethodConfig):
    needs_qa_forget: ClassVar[bool] = True

    def forget_views(self, examples):
        return {"forget": with_refusals(examples)}

    def forget_loss(self, logits, labels, *, num_tokens=None, **_):
        return losses.nll(logits, labels, num_tokens=num_tokens)
