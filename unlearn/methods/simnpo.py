"""SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning", arXiv 2410.07163): ``L = mean_s −(2/β) log σ(β (NLL̄_θ(s) − δ))``.

``NLL̄_θ(s)`` is the sequence's NLL divided by its number of answer tokens; no reference model. The
paper's margin ``γ`` (in ``σ(−(β/|y|) log π_θ(y|x) − γ)``) is ``γ = β·δ``. Defaults ``beta=4.5``,
``delta=0.0``: open-unlearning's trainer config (configs/trainer/SimNPO.yaml, its TOFU setting,
which cites the paper's code). That config also weights the forget term by 0.125 with an NLL
retain term; here those are ``forget_weight`` and ``retain``, left at the shared defaults."""

from dataclasses import dataclass

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.validate import check_number


@register("simnpo")
@dataclass(frozen=True)
class SimNPO(MethodConfig):
    beta: float = 4.5
    delta: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        check_number("beta", self.beta, strict=True)
        check_number("delta", self.delta)

    def forget_loss(self, logits, labels, *, num_sequences=None, **_):
        return losses.simnpo(logits, labels, self.beta, self.delta, num_sequences=num_sequences)
