"""Pure unlearning losses over tensors (no model calls).

Every loss takes full causal-LM logits ``(B, T, V)`` and labels ``(B, T)`` with ``-100`` = ignore and
does the shift itself: ``logits[:, :-1]`` predicts ``labels[:, 1:]``. Everything is computed in at
least float32 (bf16 / fp16 are upcast, float64 stays float64).

Reductions. Token-level losses return ``sum over valid tokens / num_tokens`` and NPO returns
``sum over sequences / num_sequences``; without the keyword the divisor is the batch's own count.
When an update is split into micro-batches and ranks, the caller passes the divisor that makes the
engine's averaging exact (see ``unlearn.step.divisor``), so an update does not depend on the split.

Formulas (``docs/methods.md``): GA ``-mean(-log p_y)``; NPO (Zhang et al. 2024)
``mean_s -(2/β) log σ(β (NLL_θ(s) − NLL_ref(s)))``; UnDIAL (Dong et al. 2024)
``KL(softmax(z_θ0 − γ·onehot(y)) ‖ p_θ)``; Unilogit (ACL 2025) ``KL(p_θ ‖ sg(q))`` with
``q_y = 1/V`` and the other tokens keeping their ratios; KL retain ``KL(p_θ0 ‖ p_θ)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from unlearn.validate import check

IGNORE = -100
DIVERGENCES = ("reverse", "forward")
# Rows of (·, V) processed at once by the chunked Unilogit kernels: bounds temporaries to ~64 MiB fp32.
_CHUNK_ELEMENTS = 1 << 24


def compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def shift(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Causal alignment: ``(z, y, mask)`` with z ``(B, T-1, V)`` a view of logits (not upcast),
    y ``(B, T-1)`` safe token ids (ignored positions set to 0, masked before any indexing) and
    mask ``(B, T-1)`` bool of valid positions."""
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(f"logits must be (B, T, V) and labels (B, T); got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    z = logits[:, :-1]  # (B, T-1, V)
    target = labels[:, 1:]  # (B, T-1)
    mask = target != IGNORE
    y = torch.where(mask, target, torch.zeros_like(target))
    return z, y, mask


def _upcast(z: Tensor) -> Tensor:
    return z.to(compute_dtype(z))


def _reduce(per_token: Tensor, mask: Tensor, num_tokens: float | Tensor | None) -> Tensor:
    total = torch.where(mask, per_token, torch.zeros_like(per_token)).sum()
    if num_tokens is None:
        num_tokens = mask.sum().clamp(min=1)
    return total / num_tokens


def token_nll(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-position NLL ``(B, T-1)`` (0 at ignored positions) and the valid mask."""
    z, y, mask = shift(logits, labels)
    nll_tok = _TokenNLL.apply(z, y)  # (B, T-1)
    return torch.where(mask, nll_tok, torch.zeros_like(nll_tok)), mask


class _TokenNLL(torch.autograd.Function):
    """``logsumexp(z) − z_y`` per position on the shifted view, in the compute dtype: no (B, T-1, V)
    copy (a flattened view for ``cross_entropy`` costs one), and a backward that writes
    ``g·(softmax(z) − e_y)`` into the gradient buffer chunk by chunk in one exp pass (autograd's
    logsumexp + gather backward makes three passes and two temporaries)."""

    @staticmethod
    def forward(ctx, z, y):
        lse = torch.empty(z.shape[:2], dtype=compute_dtype(z), device=z.device)
        for i, rows in _row_chunks(z):
            lse[i, rows] = torch.logsumexp(z[i, rows].to(lse.dtype), dim=-1)
        ctx.save_for_backward(z, y, lse)
        return lse - z.gather(-1, y.unsqueeze(-1)).squeeze(-1).to(lse.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        z, y, lse = ctx.saved_tensors
        g = grad_out.to(lse.dtype)
        grad = torch.empty_like(z, dtype=lse.dtype)
        for i, rows in _row_chunks(z):
            out = grad[i, rows]  # (n, V) view
            torch.sub(z[i, rows], lse[i, rows].unsqueeze(-1), out=out)
            out.exp_().mul_(g[i, rows].unsqueeze(-1))
            out.scatter_add_(-1, y[i, rows].unsqueeze(-1), -g[i, rows].unsqueeze(-1))
        return grad.to(z.dtype), None


def nll(logits: Tensor, labels: Tensor, *, num_tokens=None) -> Tensor:
    """Mean token negative log-likelihood over valid tokens (the ``nll`` retain term)."""
    per_token, mask = token_nll(logits, labels)
    return _reduce(per_token, mask, num_tokens)


def sequence_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """``(B,)``: NLL summed over each sequence's valid tokens."""
    per_token, _ = token_nll(logits, labels)
    return per_token.sum(dim=-1)


def ga(logits: Tensor, labels: Tensor, *, num_tokens=None) -> Tensor:
    """Gradient ascent: the negative of the mean token NLL."""
    return -nll(logits, labels, num_tokens=num_tokens)


def npo(logits: Tensor, labels: Tensor, ref_sequence_nll: Tensor, beta: float, *,
        num_sequences=None) -> Tensor:
    """NPO: ``mean_s (2/β) softplus(-β (NLL_θ(s) − NLL_ref(s)))`` (= −(2/β) log σ(β Δ))."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    per_token, mask = token_nll(logits, labels)
    seq = per_token.sum(dim=-1)  # (B,)
    ref = ref_sequence_nll.detach().to(seq.dtype)
    if ref.shape != seq.shape:
        raise ValueError(f"ref_sequence_nll must have shape {tuple(seq.shape)}, got {tuple(ref.shape)}")
    has_tokens = mask.any(dim=-1)  # (B,) a sequence with no valid token is not a sequence
    per_seq = (2.0 / beta) * F.softplus(-beta * (seq - ref))  # (B,)
    per_seq = torch.where(has_tokens, per_seq, torch.zeros_like(per_seq))
    divisor = has_tokens.sum().clamp(min=1) if num_sequences is None else num_sequences
    return per_seq.sum() / divisor


def undial_targets(ref_logits: Tensor, labels: Tensor, gamma: float) -> Tensor:
    """UnDIAL soft labels as log-probabilities ``(B, T-1, V)``, detached:
    ``log softmax(z_θ0 − γ · onehot(y))`` (the target logit lowered by γ at valid positions)."""
    z, y, mask = shift(ref_logits.detach(), labels)
    return lowered_target_logprobs(z, y, gamma, mask)


@torch.no_grad()
def lowered_target_logprobs(z: Tensor, y: Tensor, gamma: float, mask: Tensor | None = None) -> Tensor:
    """UnDIAL's soft label on *aligned* logits ``z (B, T', V)`` and targets ``y (B, T')``."""
    z = _upcast(z).clone()  # (B, T', V)
    drop = torch.full_like(y, gamma, dtype=z.dtype) if mask is None else (gamma * mask).to(z.dtype)
    z.scatter_add_(-1, y.unsqueeze(-1), -drop.unsqueeze(-1))
    return torch.log_softmax(z, dim=-1)


def _kl_per_token(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``KL(p ‖ q)`` over the last dim from log-probabilities; ``(B, T-1)``."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def undial(logits: Tensor, ref_logits: Tensor, labels: Tensor, gamma: float, *,
           num_tokens=None) -> Tensor:
    """UnDIAL: forward ``KL(q ‖ p_θ)``, token mean, with q from :func:`undial_targets`."""
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    log_q = undial_targets(ref_logits, labels, gamma)  # (B, T-1, V)
    z, _, mask = shift(logits, labels)
    log_p = torch.log_softmax(_upcast(z), dim=-1)  # (B, T-1, V)
    return _reduce(_kl_per_token(log_q, log_p), mask, num_tokens)


def kl_retain(logits: Tensor, ref_logits: Tensor, labels: Tensor, *, num_tokens=None) -> Tensor:
    """KL retain term: token mean of ``KL(p_ref ‖ p_θ)`` over valid positions."""
    z_ref, _, mask = shift(ref_logits.detach(), labels)
    z, _, _ = shift(logits, labels)
    log_ref = torch.log_softmax(_upcast(z_ref), dim=-1)  # (B, T-1, V)
    log_p = torch.log_softmax(_upcast(z), dim=-1)  # (B, T-1, V)
    return _reduce(_kl_per_token(log_ref, log_p), mask, num_tokens)


# ---------------------------------------------------------------------------------------- Unilogit

def _row_chunks(z: Tensor):
    """Yield ``(b, slice)`` over rows of each sequence so that a chunk holds ≤ _CHUNK_ELEMENTS."""
    rows = max(1, _CHUNK_ELEMENTS // z.shape[-1])
    for b in range(z.shape[0]):
        for start in range(0, z.shape[1], rows):
            yield b, slice(start, start + rows)


@torch.no_grad()
def _target_stats(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per position: ``a = log p_y``, ``b = log(1 − p_y) = log Σ_{v≠y} p_v`` and ``lse``.

    ``b`` is a logsumexp over the non-target logits (masked copy of one chunk only), so it stays
    finite and accurate when ``p_y → 1``, where ``log(1 − exp(a))`` would be ``-inf``."""
    dtype = compute_dtype(z)
    shape = z.shape[:2]
    a, b, lse = (torch.empty(shape, dtype=dtype, device=z.device) for _ in range(3))
    for i, rows in _row_chunks(z):
        yc = y[i, rows].unsqueeze(-1)  # (n, 1)
        others = z[i, rows].to(dtype).scatter(-1, yc, -math.inf)  # (n, V): the one chunk copy
        top = others.amax(dim=-1, keepdim=True)
        lse_not_y = top.squeeze(-1) + others.sub_(top).exp_().sum(dim=-1).log()
        z_y = z[i, rows].gather(-1, yc).squeeze(-1).to(dtype)
        lse_c = torch.logaddexp(lse_not_y, z_y)  # the full logsumexp, from the two parts
        lse[i, rows] = lse_c
        a[i, rows] = z_y - lse_c
        b[i, rows] = lse_not_y - lse_c
    return a, b, lse


def _bernoulli_kl(a: Tensor, b: Tensor, vocab: int, reverse: bool) -> Tensor:
    """Per-token Unilogit loss from ``a = log p_y``, ``b = log(1 − p_y)``.

    reverse: ``KL(Bern(p_y) ‖ Bern(1/V))``; forward: ``KL(Bern(1/V) ‖ Bern(p_y))``."""
    log_v, log_rest = math.log(vocab), math.log(vocab / (vocab - 1))
    if reverse:
        return a.exp() * (a + log_v) + b.exp() * (b + log_rest)
    return (-log_v - a) / vocab + (1 - 1 / vocab) * (-log_rest - b)


def _bernoulli_kl_partials(a: Tensor, b: Tensor, vocab: int, reverse: bool) -> tuple[Tensor, Tensor]:
    """``∂L/∂a`` and ``∂L/∂b`` of :func:`_bernoulli_kl`, treating a and b as independent."""
    if reverse:
        return a.exp() * (a + math.log(vocab) + 1), b.exp() * (b + math.log(vocab / (vocab - 1)) + 1)
    return torch.full_like(a, -1 / vocab), torch.full_like(b, -(1 - 1 / vocab))


class _UnilogitKL(torch.autograd.Function):
    """Unilogit with targets from the current model, in O(V) per token and no saved copy.

    Because ``q_v / p_v`` is the same for every ``v ≠ y``, ``KL(p ‖ sg(q))`` equals the two-outcome
    KL of ``p_y`` against ``1/V`` in value *and* gradient (``docs/methods.md``); tests check both against the
    literal KL over the vocabulary. Only the logits (already alive) and three ``(B, T-1)`` vectors
    are kept for backward; the gradient ``∂L/∂a (e_y − p) + ∂L/∂b (r − p)`` with
    ``r = p·[v≠y]/(1 − p_y)`` is rebuilt chunk by chunk in one exp pass."""

    @staticmethod
    def forward(ctx, z, y, mask, reverse):
        a, b, lse = _target_stats(z, y)
        loss = _bernoulli_kl(a, b, z.shape[-1], reverse)  # (B, T-1)
        ctx.save_for_backward(z, y, mask, a, b, lse)
        ctx.reverse = reverse
        return torch.where(mask, loss, torch.zeros_like(loss))

    @staticmethod
    def backward(ctx, grad_out):
        z, y, mask, a, b, lse = ctx.saved_tensors
        d_a, d_b = _bernoulli_kl_partials(a, b, z.shape[-1], ctx.reverse)
        g_out = grad_out.to(a.dtype)
        zero = torch.zeros_like(a)
        d_a = torch.where(mask, d_a * g_out, zero)  # (B, T-1)
        d_b = torch.where(mask, d_b * g_out, zero)
        # For v ≠ y: g_v = d_b r_v − (d_a + d_b) p_v = r_v (d_b − (d_a + d_b)(1 − p_y)), with
        # r_v = exp(z_v − lse − b) ≤ 1; g_y = d_a − (d_a + d_b) p_y is written over the y entry.
        # One exp pass per chunk, in place in the gradient buffer.
        offset = lse + b  # (B, T-1)
        scale = d_b - (d_a + d_b) * b.exp()
        at_y = d_a - (d_a + d_b) * a.exp()
        grad = torch.empty_like(z, dtype=a.dtype)
        for i, rows in _row_chunks(z):
            out = grad[i, rows]  # (n, V) view
            torch.sub(z[i, rows], offset[i, rows].unsqueeze(-1), out=out)
            out.exp_().mul_(scale[i, rows].unsqueeze(-1))
            out.scatter_(-1, y[i, rows].unsqueeze(-1), at_y[i, rows].unsqueeze(-1))
        grad = grad.to(z.dtype)
        return grad, None, None, None


def unilogit_targets(logits: Tensor, labels: Tensor) -> Tensor:
    """Unilogit soft labels as log-probabilities ``(B, T-1, V)``, detached.

    ``z̃_v = z_v (v ≠ y)``, ``z̃_y = log Σ_{v≠y} exp(z_v) − log(V − 1)``, so that ``q_y = 1/V``
    exactly and the other tokens keep their ratios. Values at ignored positions are unused."""
    z, y, _ = shift(logits.detach(), labels)
    return uniform_target_logprobs(z, y)


@torch.no_grad()
def uniform_target_logprobs(z: Tensor, y: Tensor) -> Tensor:
    """Unilogit's soft label on *aligned* logits ``z (B, T', V)`` and targets ``y (B, T')``."""
    vocab = z.shape[-1]
    _, b, lse = _target_stats(z, y)
    z_t = _upcast(z).clone()  # (B, T', V)
    z_t.scatter_(-1, y.unsqueeze(-1), (lse + b - math.log(vocab - 1)).unsqueeze(-1))
    return torch.log_softmax(z_t, dim=-1)


def unilogit(logits: Tensor, labels: Tensor, ref_logits: Tensor | None = None,
             divergence: str = "reverse", *, num_tokens=None) -> Tensor:
    """Unilogit: token mean of ``KL(p_θ ‖ sg(q))`` (``divergence="reverse"``, the paper's) or
    ``KL(q ‖ p_θ)`` (``"forward"``). ``ref_logits`` given → q is built from the initial model
    instead of the current one (the paper's ``target: initial`` ablation)."""
    check(divergence in DIVERGENCES, "divergence", f"one of {', '.join(DIVERGENCES)}", divergence)
    z, y, mask = shift(logits, labels)
    if ref_logits is None:
        per_token = _UnilogitKL.apply(z, y, mask, divergence == "reverse")
        return _reduce(per_token, mask, num_tokens)
    log_q = unilogit_targets(ref_logits, labels)  # (B, T-1, V)
    log_p = torch.log_softmax(_upcast(z), dim=-1)  # (B, T-1, V)
    pair = (log_p, log_q) if divergence == "reverse" else (log_q, log_p)
    return _reduce(_kl_per_token(*pair), mask, num_tokens)
