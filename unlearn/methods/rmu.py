"""RMU, representation misdirection (Li et al. 2024, *The WMDP Benchmark*): on the hidden states of
one layer, the forget term steers the forget tokens to a fixed random control vector and the retain
term keeps the retain tokens where the frozen model has them:
``L = mean_t ‖h_t − c‖² / d + α · mean_t ‖h_t − h_θ0,t‖² / d`` (``losses.rmu_forget`` and the
``hidden`` retain term). ``c`` is a uniform random vector of unit norm times ``steering``, drawn from
the trial's seed, so a resumed trial steers to the same vector. Only the MLP down-projections of
``train_layers`` train (every other weight is frozen, and the optimizer never sees it).

Defaults, from the WMDP authors' Zephyr-7B run (layer 7 of 32, layers 5–7's MLP down-projection,
steering coefficient 6.5, α = 1200): ``layer`` None is the layer at 7/32 of the model's depth,
``train_layers`` empty is that layer and the two below it, ``retain_weight`` 1200 with the
``hidden`` retain term. The positions that count are those whose next token is trained (the labels'
valid positions, so that the step's token counts make every update an exact effective-batch mean).
"""

from dataclasses import dataclass
from typing import ClassVar

import torch

from unlearn import losses
from unlearn.methods.base import MethodConfig, register
from unlearn.validate import check, check_number, is_int

TRAINED = "mlp.down_proj"


@register("rmu")
@dataclass(frozen=True)
class RMU(MethodConfig):
    retain_weight: float = 1200.0
    retain: str = "hidden"
    layer: int | None = None
    steering: float = 6.5
    train_layers: tuple = ()
    steers_hidden: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        check(self.layer is None or (is_int(self.layer) and self.layer >= 0), "layer",
              "an int >= 0 (a layer index), or null for the layer at 7/32 of the depth", self.layer)
        check_number("steering", self.steering, strict=True)
        layers = tuple(self.train_layers) if isinstance(self.train_layers, (list, tuple)) else None
        check(layers is not None and all(is_int(i) and i >= 0 for i in layers), "train_layers",
              "a list of layer indices >= 0 (empty: the steered layer and the two below)", self.train_layers)
        object.__setattr__(self, "train_layers", layers)

    def layer_of(self, num_layers: int) -> int:
        layer = num_layers * 7 // 32 if self.layer is None else self.layer
        if layer >= num_layers:
            raise ValueError(f"rmu layer {layer} does not exist: the model has {num_layers} layers")
        return layer

    def trains(self, name: str, num_layers: int) -> bool:
        layer = self.layer_of(num_layers)
        chosen = self.train_layers or tuple(i for i in (layer - 2, layer - 1, layer) if i >= 0)
        return any(f"layers.{i}.{TRAINED}." in name for i in chosen)

    def control(self, size: int, seed: int) -> torch.Tensor:
        """The ``(size,)`` float32 control vector of a trial with this seed."""
        direction = torch.rand(size, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float32)
        return self.steering * direction / direction.norm()

    def forget_loss(self, logits, labels, *, hidden=None, positions=None, control=None, num_tokens=None, **_):
        if hidden is None or positions is None or control is None:
            raise ValueError("rmu needs the steered layer's hidden states, their positions and the control vector")
        return losses.rmu_forget(hidden, positions, control, num_tokens=num_tokens)
