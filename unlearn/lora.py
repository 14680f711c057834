"""LoRA for every method (peft): the adapters train, every weight of the model stays frozen.

A LoRA trial wraps the model in a peft model (:func:`apply`); the adapters start with ``B = 0``, so
the adapted model starts as the base model. The frozen reference that UnDIAL and the ``kl`` retain
term need is the same model with its adapters disabled (:class:`Reference`, peft's
``disable_adapter()``), not a second copy. Evaluation runs on the adapted model (:func:`adapted`).
Checkpoints hold the adapters only (:func:`save_adapters`); :func:`merged` folds them into the base
weights, a standard model that ``unlearn.models.load_model`` reads back without peft.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

from unlearn.validate import ValidationError, check, check_int, check_keys, check_number, fail, is_number

ALL_LINEAR = "all-linear"  # peft's: every linear layer but the output layer
ADAPTER_CONFIG = "adapter_config.json"  # peft's name; beside a checkpoint's shards it marks a LoRA trial


@dataclass(frozen=True)
class LoraConfig:
    """A method's ``lora`` section: rank ``r``, scale ``alpha / r``, dropout on the adapters' input,
    and the modules adapted (``all-linear`` or a list of module names such as ``q_proj``)."""

    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    target_modules: str | tuple = ALL_LINEAR

    def __post_init__(self):
        check_int("r", self.r, 1)
        check_number("alpha", self.alpha, strict=True)
        check(is_number(self.dropout) and 0 <= self.dropout < 1, "dropout", "a number in [0, 1)", self.dropout)
        modules = tuple(self.target_modules) if isinstance(self.target_modules, list) else self.target_modules
        names = isinstance(modules, tuple) and modules and all(isinstance(m, str) and m.strip() for m in modules)
        check(modules == ALL_LINEAR or (names and len(set(modules)) == len(modules)), "target_modules",
              f"{ALL_LINEAR} or a non-empty list of distinct module names (e.g. [q_proj, v_proj])",
              self.target_modules)
        object.__setattr__(self, "target_modules", modules)

    def to_peft(self):
        from peft import LoraConfig as PeftLoraConfig

        modules = self.target_modules if self.target_modules == ALL_LINEAR else list(self.target_modules)
        return PeftLoraConfig(task_type="CAUSAL_LM", r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                              target_modules=modules, bias="none")


FIELDS = tuple(f.name for f in dataclasses.fields(LoraConfig))


def make(params: dict | None) -> LoraConfig | None:
    """A validated config from a ``lora`` mapping (``None``: no LoRA); an unknown key is an error."""
    if params is None:
        return None
    if not isinstance(params, dict):
        fail("lora", f"a mapping with keys among {', '.join(FIELDS)}", params)
    check_keys("lora", params, FIELDS)
    return LoraConfig(**params)


def is_lora(model) -> bool:
    """Whether ``model`` is a peft model (without importing peft)."""
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def apply(model, config: LoraConfig, *, base: str | None = None):
    """``model`` wrapped for LoRA (a peft ``PeftModelForCausalLM``; its weights frozen, the adapters
    trainable). ``base``, where the base model is, is recorded in the adapters' config for export.
    Target modules that name nothing in the model are an error naming its linear layers."""
    from peft import get_peft_model

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
            wrapped = get_peft_model(model, config.to_peft())
    except ValueError as error:
        if "not found in the base model" not in str(error):
            raise
        wrapped = None
    if wrapped is None:
        modules = config.target_modules
        fail("target_modules", f"module names of the model (its linear layers: {', '.join(linear_names(model))})",
             list(modules) if isinstance(modules, tuple) else modules)
    if base is not None:
        wrapped.peft_config["default"].base_model_name_or_path = str(base)
    return wrapped


def linear_names(model) -> list[str]:
    """The names (last component) of the model's linear layers, but its output layer."""
    from torch import nn

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, nn.Linear) and module is not output})


def trainable(model) -> int:
    """Parameters that train (the adapters' under LoRA), whole even when ZeRO-3 has split them."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)


class Reference:
    """The frozen reference of a LoRA model: the same module, called with its adapters disabled and
    in eval mode (as a frozen copy would be), under ``torch.no_grad`` where the caller puts it.
    It holds no weights of its own."""

    def __init__(self, model):
        if not is_lora(model):
            raise TypeError(f"Reference wraps a peft model; got {type(model).__name__}")
        self.module = model

    def __call__(self, **inputs):
        was_training = self.module.training
        self.module.train(False)
        try:
            with self.module.disable_adapter():
                return self.module(**inputs)
        finally:
            self.module.train(was_training)


def adapted(model):
    """What evaluation runs: for a peft model, the transformers model inside it with the adapters in
    place and active (a plain model to the benchmarks: ``generate``, its forward's keywords);
    any other model as it is."""
    return model.get_base_model() if is_lora(model) else model


def save_adapters(model, tokenizer, out: str | Path) -> Path:
    """The adapters (safetensors) and their config, with the tokenizer, in ``out``."""
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def base_of(adapter_dir: str | Path) -> str:
    """Where the base model of saved adapters is (recorded by :func:`apply`)."""
    import json

    path = Path(adapter_dir) / ADAPTER_CONFIG
    base = json.loads(path.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValidationError(f"{path} names no base model (base_model_name_or_path)")
    return base


def merged(adapter_dir: str | Path, state: dict | None = None):
    """(model, tokenizer): the base model with the adapters of ``adapter_dir`` merged into its
    weights, a plain transformers model. ``state``: adapter weights to use instead of the saved
    ones (an unfinished trial's, consolidated from its DeepSpeed checkpoint)."""
    from peft import PeftConfig, PeftModel, get_peft_model

    from unlearn import models

    adapter_dir = Path(adapter_dir)
    base = base_of(adapter_dir)
    try:
        model, tokenizer = models.load_model(base)
    except (OSError, ValueError) as error:
        raise ValidationError(f"the base model of the adapters in {adapter_dir} ({base!r}) cannot be loaded: "
                              f"{error}") from None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
        if state is None:
            wrapped = PeftModel.from_pretrained(model, str(adapter_dir))
        else:
            wrapped = get_peft_model(model, PeftConfig.from_pretrained(str(adapter_dir)))
            result = wrapped.load_state_dict(state, strict=False)
            adapters = {n for n, p in wrapped.named_parameters() if p.requires_grad}
            missing = sorted(adapters & set(result.missing_keys))
            if result.unexpected_keys or missing:
                raise ValidationError(f"the adapter weights do not fit the adapters of {adapter_dir} (missing "
                                      f"{missing[:3]}, unexpected {sorted(result.unexpected_keys)[:3]})")
    return wrapped.merge_and_unload(), tokenizer
