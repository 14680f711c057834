"""GD, gradient difference: GA on the forget set plus the ``nll`` retain term (fixed)."""

from dataclasses import dataclass

from unlearn.methods.base import register
from unlearn.methods.ga import GA
from unlearn.validate import check


@register("gd")
@dataclass(frozen=True)
class GD(GA):
    retain: str = "nll"

    def __post_init__(self):
        super().__post_init__()
        check(self.retain == "nll", "retain", "'nll' for gd (use ga for other retain terms)", self.retain)
