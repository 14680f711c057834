"""The one place that runs forward passes and builds what the losses need.

``total = forget_weight · forget_term(D_forget) + retain_weight · retain_term(D_retain)``.

Exact reductions across micro-batches and ranks: a token-level term is ``Σ_valid ℓ / divisor``
with ``divisor = (valid tokens in the whole effective batch) / (accumulation_steps · world_size)``.
The engine divides every micro-batch loss by ``accumulation_steps`` and averages gradients over
ranks, so the update is ``Σ_effective-batch ℓ / tokens`` however the batch is split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from unlearn import losses
from unlearn.methods.base import MethodConfig
from unlearn.validate import fail


def divisor(total: Tensor | float, accumulation_steps: int, world_size: int) -> Tensor | float:
    """Per-micro-batch divisor that makes the engine's averaging an exact effective-batch mean."""
    return total / (accumulation_steps * world_size)


def count_tokens(batch: dict) -> Tensor:
    """Valid (predicted) positions of a collated batch, after the causal shift."""
    return (batch["labels"][:, 1:] != losses.IGNORE).sum()


def count_sequences(batch: dict) -> Tensor:
    return (batch["labels"][:, 1:] != losses.IGNORE).any(dim=-1).sum()


@dataclass(frozen=True)
class Divisors:
    forget_tokens: Tensor | float | None = None
    forget_sequences: Tensor | float | None = None
    retain_tokens: Tensor | float | None = None


def logits_of(model, batch: dict) -> Tensor:
    """``(B, T, V)`` logits; the attention mask is always passed, and no KV cache is built (nothing
    decodes after a training pass, and under gradient checkpointing a cache would keep every
    layer's keys and values)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits


@torch.no_grad()
def reference_logits(ref_model, batch: dict) -> Tensor:
    return logits_of(ref_model, batch)


def hidden_states(model, batch: dict) -> tuple:
    """The embeddings and every decoder layer's output, each ``(B, T, d)`` (layer ``i`` at ``i + 1``)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                 output_hidden_states=True).hidden_states


def positions(batch: dict) -> Tensor:
    """``(B, T)`` bool: the positions whose next token is trained (so the step's token counts apply)."""
    out = torch.zeros_like(batch["labels"], dtype=torch.bool)
    out[:, :-1] = batch["labels"][:, 1:] != losses.IGNORE
    return out


def loss_terms(model, method: MethodConfig, forget: dict, retain: dict | None = None, *,
               preferred: dict | None = None, ref_model=None, ref_nll: dict | Tensor | None = None,
               divisors: Divisors = Divisors(), seed: int = 0,
               method_state: dict | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss of one micro-batch pair and its parts (detached) for logging. ``preferred`` is the
    preference methods' batch of the same questions with the preferred answers; ``ref_nll`` maps a
    view of ``method.forget_views`` to its reference NLLs (a tensor: those of ``forget``); ``seed``
    (the trial's) draws a hidden-state method's control vector; ``method_state`` is what the method
    carries between updates (PDU's dual variable, the retain weight)."""
    retain_weight = method.retain_weight_in(method_state or method.initial_state())
    if method.steers_hidden:
        return _hidden_terms(model, method, forget, retain, ref_model=ref_model, divisors=divisors, seed=seed,
                             retain_weight=retain_weight)
    ref_forget = reference_logits(ref_model, forget) if method.needs_ref_forget_logits else None
    logits = logits_of(model, forget)  # (B, T, V)
    preferred_logits = logits_of(model, preferred) if preferred is not None else None  # (B, T', V)
    ref_seq = ref_preferred = None
    if method.needs_ref_nll:
        refs = ref_nll if isinstance(ref_nll, dict) else {"forget": ref_nll}
        ref_seq = _looked_up(refs, "forget", forget, method)
        ref_preferred = _looked_up(refs, "preferred", preferred, method) if preferred is not None else None
    forget_term = method.forget_loss(logits, forget["labels"], ref_logits=ref_forget, ref_logits_scratch=True,
                                     ref_sequence_nll=ref_seq,
                                     preferred_logits=preferred_logits,
                                     preferred_labels=None if preferred is None else preferred["labels"],
                                     ref_preferred_nll=ref_preferred, num_tokens=divisors.forget_tokens,
                                     num_sequences=divisors.forget_sequences)
    total = method.forget_weight * forget_term
    parts = {"forget_loss": forget_term.detach()}
    if method.uses_retain and retain is not None:
        retain_term = retain_loss(model, method.retain, retain, ref_model=ref_model,
                                  num_tokens=divisors.retain_tokens)
        total = total + retain_weight * retain_term
        parts["retain_loss"] = retain_term.detach()
    parts["loss"] = total.detach()
    return total, parts


def _hidden_terms(model, method: MethodConfig, forget: dict, retain: dict | None, *, ref_model, divisors: Divisors,
                  seed: int, retain_weight: float) -> tuple[Tensor, dict[str, Tensor]]:
    """A hidden-state method's loss (RMU): its terms on the steered layer's hidden states."""
    states = hidden_states(model, forget)
    layer = method.layer_of(len(states) - 1)
    hidden = states[layer + 1]  # (B, T, d)
    control = method.control(hidden.shape[-1], seed).to(hidden.device)  # (d,)
    forget_term = method.forget_loss(None, forget["labels"], hidden=hidden, positions=positions(forget),
                                     control=control, num_tokens=divisors.forget_tokens)
    total = method.forget_weight * forget_term
    parts = {"forget_loss": forget_term.detach()}
    if method.uses_retain and retain is not None:
        retain_term = retain_loss(model, method.retain, retain, ref_model=ref_model,
                                  num_tokens=divisors.retain_tokens, layer=layer)
        total = total + retain_weight * retain_term
        parts["retain_loss"] = retain_term.detach()
    parts["loss"] = total.detach()
    return total, parts


def _looked_up(refs: dict, view: str, batch: dict, method: MethodConfig) -> Tensor:
    """``(B,)`` reference NLLs of a batch's examples, by their ``index``."""
    if refs.get(view) is None:
        raise ValueError(f"{method.name} needs the reference NLLs of its {view!r} examples (see reference_nlls)")
    return refs[view][batch["index"].cpu()].to(batch["labels"].device)


def _retain_nll(model, batch, ref_model, num_tokens, layer):
    return losses.nll(logits_of(model, batch), batch["labels"], num_tokens=num_tokens)


def _retain_kl(model, batch, ref_model, num_tokens, layer):
    return losses.kl_retain(logits_of(model, batch), reference_logits(ref_model, batch), batch["labels"],
                            num_tokens=num_tokens)


def _retain_hidden(model, batch, ref_model, num_tokens, layer):
    with torch.no_grad():
        frozen = hidden_states(ref_model, batch)[layer + 1]  # (B, T, d)
    return losses.rmu_retain(hidden_states(model, batch)[layer + 1], frozen, positions(batch), num_tokens=num_tokens)


# The retain terms by name: (function, needs the frozen reference model).
RETAIN = {"nll": (_retain_nll, False), "kl": (_retain_kl, True), "hidden": (_retain_hidden, True)}


def retain_loss(model, term: str, batch: dict, *, ref_model=None, num_tokens=None, layer: int | None = None) -> Tensor:
    """The retain term ``term`` on a retain batch (``hidden``: at the steered ``layer``)."""
    if term not in RETAIN:
        fail("retain", f"one of {', '.join(RETAIN)}", term)
    function, needs_reference = RETAIN[term]
    if needs_reference and ref_model is None:
        raise ValueError(f"retain term {term!r} needs the frozen reference model")
    return function(model, batch, ref_model, num_tokens, layer)


@torch.no_grad()
def reference_sequence_nll(model, examples: list[dict], collate, *, batch_size: int = 8,
                           device: str | torch.device = "cpu") -> Tensor:
    """NPO's ``NLL_ref(s)`` for every forget example, computed once before training (put the model
    in eval mode first). Returns a ``(N,)`` float64 tensor indexed by each example's ``index``
    field, so a training batch looks its values up instead of keeping a second model in memory."""
    n = max(int(e["index"]) for e in examples) + 1
    out = torch.full((n,), float("nan"), dtype=torch.float64)
    for start in range(0, len(examples), batch_size):
        batch = to_device(collate(examples[start:start + batch_size]), device)
        seq = losses.sequence_nll(logits_of(model, batch), batch["labels"])  # (B,)
        out[batch["index"].cpu()] = seq.double().cpu()
    return out


def reference_nlls(model, method: MethodConfig, examples: list[dict], collate, *, batch_size: int = 8,
                   device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """``reference_sequence_nll`` of each view of ``method.forget_views(examples)`` (NPO: the forget
    examples; DPO: those and the preferred answers), before any update."""
    return {view: reference_sequence_nll(model, items, collate, batch_size=batch_size, device=device)
            for view, items in method.forget_views(examples).items()}


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}
