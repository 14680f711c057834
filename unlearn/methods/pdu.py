"""PDU, primal-dual unlearning (Entesari et al. 2025, *Constrained Entropic Unlearning*): the forget
term flattens the logits, ``mean_t (max_v z − mean_v z)²`` (``losses.logit_margin``), and the retain
loss becomes a constraint ``L_r ≤ ε`` whose multiplier λ is the retain weight, updated after every
step by dual ascent, ``λ ← max(0, λ + η (L_r − ε))``, with ``L_r`` that step's exact mean retain loss
(the same on every rank). λ is the method's state: it is logged every step (``dual``) and saved with
checkpoints, so a resumed trial continues with it. ``retain_weight`` is its starting value.

Defaults: ``dual_step`` η = 1 and the ``nll`` retain term, as open-unlearning's ``PDU`` trainer;
λ starts at 50 (``retain_weight``), as its authors advise ("50 or 100": the logit margin is large);
``warmup_epochs`` 0 (open-unlearning's 5 assume longer runs: set it to hold λ for the first epochs);
``epsilon`` has no published default (the authors set it a little above the target's retain loss):
1.0 nats here, to be set per model. The total loss is ``forget_weight · F + λ · L_r``: the constant
``−λε`` of the Lagrangian changes no gradient and is left out.
"""

from dataclasses import dataclass

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.validate import check_int, check_number


@register("pdu")
@dataclass(frozen=True)
class PDU(MethodConfig):
    retain_weight: float = 50.0
    retain: str = "nll"
    epsilon: float = 1.0
    dual_step: float = 1.0
    warmup_epochs: int = 0

    def __post_init__(self):
        super().__post_init__()
        check_number("epsilon", self.epsilon)
        check_number("dual_step", self.dual_step)
        check_int("warmup_epochs", self.warmup_epochs, 0)

    @property
    def uses_retain(self) -> bool:  # λ may start at 0 and grow: the retain batches are always needed
        return self.retain != "none"

    def initial_state(self) -> dict:
        return {"dual": float(self.retain_weight)}

    def next_state(self, state: dict, metrics: dict, epoch: int) -> dict:
        if epoch < self.warmup_epochs or "retain_loss" not in metrics:
            return state
        return {"dual": max(0.0, state["dual"] + self.dual_step * (metrics["retain_loss"] - self.epsilon))}

    def retain_weight_in(self, state: dict) -> float:
        return state["dual"]

    def forget_loss(self, logits, labels, *, num_tokens=None, **_):
        return losses.logit_margin(logits, labels, num_tokens=num_tokens)
