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
    """``(B, T, V)`` logits; the attention mask is always passed."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@torch.no_grad()
def reference_logits(ref_model, batch: dict) -> Tensor:
    return logits_of(ref_model, batch)


def loss_terms(model, method: MethodConfig, forget: dict, retain: dict | None = None, *,
               preferred: dict | None = None, ref_model=None, ref_nll: dict | Tensor | None = None,
               divisors: Divisors = Divisors()) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss of one micro-batch pair and its parts (detached) for logging. ``preferred`` is the
    preference methods' batch of the same questions with the preferred answers; ``ref_nll`` maps a
    view of ``method.forget_views`` to its reference NLLs (a tensor: those of ``forget``)."""
    ref_forget = reference_logits(ref_model, forget) if method.needs_ref_forget_logits else None
    logits = logits_of(model, forget)  # (B, T, V)
    preferred_logits = logits_of(model, preferred) if preferred is not None else None  # (B, T', V)
    ref_seq = ref_preferred = None
    if method.needs_ref_nll:
        refs = ref_nll if isinstance(ref_nll, dict) else {"forget": ref_nll}
        ref_seq = _looked_up(refs, "forget", forget, method)
        ref_preferred = _looked_up(refs, "preferred", preferred, method) if preferred is not None else None
    forget_term = method.forget_loss(logits, forget["labels"], ref_logits=ref_forget, ref_sequence_nll=ref_seq,
                                     preferred_logits=preferred_logits,
                                     preferred_labels=None if preferred is None else preferred["labels"],
                                     ref_preferred_nll=ref_preferred, num_tokens=divisors.forget_tokens,
                                     num_sequences=divisors.forget_sequences)
    total = method.forget_weight * forget_term
    parts = {"forget_loss": forget_term.detach()}
    if method.uses_retain and retain is not None:
        retain_term = retain_loss(model, method.retain, retain, ref_model=ref_model,
                                  num_tokens=divisors.retain_tokens)
        total = total + method.retain_weight * retain_term
        parts["retain_loss"] = retain_term.detach()
    parts["loss"] = total.detach()
    return total, parts


def _looked_up(refs: dict, view: str, batch: dict, method: MethodConfig) -> Tensor:
    """``(B,)`` reference NLLs of a batch's examples, by their ``index``."""
    if refs.get(view) is None:
        raise ValueError(f"{method.name} needs the reference NLLs of its {view!r} examples (see reference_nlls)")
    return refs[view][batch["index"].cpu()].to(batch["labels"].device)


def retain_loss(model, term: str, batch: dict, *, ref_model=None, num_tokens=None) -> Tensor:
    logits = logits_of(model, batch)  # (B, T, V)
    if term == "nll":
        return losses.nll(logits, batch["labels"], num_tokens=num_tokens)
    if term == "kl":
        if ref_model is None:
            raise ValueError("retain term 'kl' needs the frozen reference model")
        return losses.kl_retain(logits, reference_logits(ref_model, batch), batch["labels"],
                                num_tokens=num_tokens)
    fail("retain", "one of nll, kl", term)


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
