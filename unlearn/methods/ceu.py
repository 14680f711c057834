"""CE-U, cross-entropy unlearning (Yang 2025, arXiv 2503.01224): ``L = mean_tokens −Σ_v q_v log p_θ(v)``
with ``q = softmax(sg(z))`` and the target's logit set to ``−∞`` (so ``q_y = 0``).

``ignore_first_token`` (default true, as open-unlearning's trainer config, configs/trainer/CEU.yaml,
``ignore_first_n_answer_tokens: 1``, after the paper's footnote): each sequence's first *predicted*
answer token is left out. Its divisor (``num_tokens`` from the step) still counts that token, so
under the loop the loss is ``Σ_kept / all answer tokens`` (split-invariant, slightly smaller than a
mean over the kept tokens); called alone it is the mean over the kept tokens."""

from dataclasses import dataclass

import torch
from torch import Tensor

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.validate import check


def without_first_target(labels: Tensor) -> Tensor:
    """``labels`` with each sequence's first predicted target (first valid ``labels[:, 1:]``) ignored."""
    target = labels[:, 1:]
    valid = target != losses.IGNORE
    first = valid & (valid.cumsum(dim=-1) == 1)
    return torch.cat([labels[:, :1], target.masked_fill(first, losses.IGNORE)], dim=1)


@register("ceu")
@dataclass(frozen=True)
class CEU(MethodConfig):
    ignore_first_token: bool = True

    def __post_init__(self):
        super().__post_init__()
        check(isinstance(self.ignore_first_token, bool), "ignore_first_token", "true or false",
              self.ignore_first_token)

    def forget_loss(self, logits, labels, *, num_tokens=None, **_):
        if self.ignore_first_token:
            labels = without_first_target(labels)
        return losses.ceu(logits, labels, num_tokens=num_tokens)
