"""Pure unlearning losses over tensors (no model calls).

Every loss takes full causal-LM logits ``(B, T, V)`` and labels ``(B, T)`` with ``-100`` = ignore and
does the shift itself: ``logits[:, :-1]`` predicts ``labels[:, 1:]``. Everything is computed in at
least float32 (bf16 / fp16 are upcast, float64 stays float64).

Reductions. Token-level losses return ``sum over valid tokens / num_tokens`` and NPO returns
``sum over sequences / num_sequences``; without the keyword the divisor is the batch's own count.
When an update is split into micro-batches and ranks, the caller passes the divisor that makes the
engine's averaging exact (see ``unlearn.step.divisor``), so an update does not depend on the split.

Formulas (``docs/methods.md``): GA ``-mean(-log p_y)``; NPO (Zhang et al. 2024)
``mean_s -(2/β) log σ(β (NLL_θ(s) − NLL_ref(s)))``; SimNPO (Fan et al. 2024)
``mean_s -(2/β) log σ(β (NLL̄_θ(s) − δ))`` with the length-normalised NLL̄; DPO (as IdkDPO)
``mean_s -(2/β) log σ(β [(NLL_ref(w) − NLL_θ(w)) − (NLL_ref(l) − NLL_θ(l))])``; WGA
``mean_t sg(p_y^β) log p_y``; SatImp ``mean_t sg(p_y^β1 (1 − p_y)^β2) log p_y``; CE-U
``mean_t −Σ_v q_v log p_v`` with ``q = softmax(sg(z))`` and ``q_y = 0``; ME
``mean_t KL(U_V ‖ p_θ)``; UnDIAL (Dong et al. 2024) ``KL(softmax(z_θ0 − γ·onehot(y)) ‖ p_θ)``;
Unilogit (ACL 2025) ``KL(p_θ ‖ sg(q))`` with ``q_y = 1/V`` and the other tokens keeping their
ratios; KL retain ``KL(p_θ0 ‖ p_θ)``; RMU (Li et al. 2024, WMDP) ``‖h − c‖² / d`` and
``‖h − h_θ0‖² / d`` per position over hidden states (no shift).
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
# UnDIAL's forward runs beside the reference logits, at the step's peak: smaller chunks (~8 MiB fp32
# per temporary; a logsumexp makes two).
_SOFT_LABEL_CHUNK_ELEMENTS = 1 << 21


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


def _check_beta(beta: float) -> None:
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")


def simnpo(logits: Tensor, labels: Tensor, beta: float, delta: float = 0.0, *,
           num_sequences=None) -> Tensor:
    """SimNPO: ``mean_s (2/β) softplus(−β (NLL̄_θ(s) − δ))`` (= −(2/β) log σ(β (NLL̄_θ(s) − δ))).

    ``NLL̄_θ(s)`` is the NLL summed over the valid tokens of ``s`` divided by their number (no
    reference model). The paper writes the margin as ``γ`` in ``σ(β NLL̄ − γ)``: ``γ = β·δ``.
    A sequence with no valid token contributes nothing and, without ``num_sequences``, is not
    counted."""
    _check_beta(beta)
    per_token, mask = token_nll(logits, labels)
    count = mask.sum(dim=-1)  # (B,)
    has_tokens = count > 0
    mean_nll = per_token.sum(dim=-1) / count.clamp(min=1).to(per_token.dtype)  # (B,)
    per_seq = (2.0 / beta) * F.softplus(-beta * (mean_nll - delta))
    per_seq = torch.where(has_tokens, per_seq, torch.zeros_like(per_seq))
    divisor = has_tokens.sum().clamp(min=1) if num_sequences is None else num_sequences
    return per_seq.sum() / divisor


def dpo(logits_w: Tensor, labels_w: Tensor, logits_l: Tensor, labels_l: Tensor, ref_nll_w: Tensor,
        ref_nll_l: Tensor, beta: float, *, num_sequences=None) -> Tensor:
    """DPO on (preferred w, rejected l) pairs, e.g. IdkDPO with w a refusal and l the forget answer:
    ``mean_s (2/β) softplus(−β [(NLL_ref(w) − NLL_θ(w)) − (NLL_ref(l) − NLL_θ(l))])``.

    NLLs are summed over each sequence's valid tokens; ``ref_nll_w``, ``ref_nll_l`` are the frozen
    model's ``(B,)`` sequence NLLs (detached here). Row ``s`` of the two batches is one pair; a pair
    counts only when both answers have a valid token (the others contribute nothing and, without
    ``num_sequences``, are not counted)."""
    _check_beta(beta)
    nll_w, mask_w = token_nll(logits_w, labels_w)
    nll_l, mask_l = token_nll(logits_l, labels_l)
    seq_w, seq_l = nll_w.sum(dim=-1), nll_l.sum(dim=-1)  # (B,)
    if seq_w.shape != seq_l.shape:
        raise ValueError(f"preferred and rejected batches must pair up; got {tuple(seq_w.shape)} "
                         f"and {tuple(seq_l.shape)} sequences")
    for name, ref in (("ref_nll_w", ref_nll_w), ("ref_nll_l", ref_nll_l)):
        if ref.shape != seq_w.shape:
            raise ValueError(f"{name} must have shape {tuple(seq_w.shape)}, got {tuple(ref.shape)}")
    dtype = torch.promote_types(seq_w.dtype, seq_l.dtype)
    margin = ((ref_nll_w.detach().to(dtype) - seq_w) - (ref_nll_l.detach().to(dtype) - seq_l))  # (B,)
    per_seq = (2.0 / beta) * F.softplus(-beta * margin)
    counted = mask_w.any(dim=-1) & mask_l.any(dim=-1)
    per_seq = torch.where(counted, per_seq, torch.zeros_like(per_seq))
    divisor = counted.sum().clamp(min=1) if num_sequences is None else num_sequences
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


class _SoftLabelKL(torch.autograd.Function):
    """UnDIAL per position: ``KL(q ‖ p)`` with ``q = softmax(r − γ·e_y)`` (r the reference logits,
    γ only at valid positions) and ``p = softmax(z)``, chunk by chunk in the compute dtype.

    Per row, ``log q = r̃ − lse(r̃)`` and ``log p = z − lse(z)``, and the loss is
    ``Σ_v q_v (log q_v − log p_v)``. Its gradient ``g·(p − q)`` needs every ``q_v``, so the forward
    writes the direction ``p − q`` (when z needs a gradient) and the backward scales it by ``g`` in
    place: no (B, T-1, V) soft label, log-softmax or product is kept, and no buffer is allocated in
    the backward. ``scratch``: the reference logits are the caller's own temporary, and the direction
    is written over them (when they are in the compute dtype) instead of into a new buffer."""

    @staticmethod
    def forward(ctx, z, r, y, mask, gamma, scratch, differentiable):
        dtype = torch.promote_types(compute_dtype(z), compute_dtype(r))
        loss = torch.empty(z.shape[:2], dtype=dtype, device=z.device)
        drop = mask.to(dtype) * gamma  # (B, T-1): γ at valid positions, 0 elsewhere
        direction = None
        if differentiable:
            reuse = scratch and r.dtype == dtype and r.untyped_storage().data_ptr() != z.untyped_storage().data_ptr()
            direction = r if reuse else torch.empty(z.shape, dtype=dtype, device=z.device)
        for i, rows in _row_chunks(z, _SOFT_LABEL_CHUNK_ELEMENTS):
            q = r[i, rows].to(dtype, copy=True) if direction is None else direction[i, rows]  # (n, V)
            if direction is not None and direction is not r:
                q.copy_(r[i, rows])
            q.scatter_add_(-1, y[i, rows].unsqueeze(-1), -drop[i, rows].unsqueeze(-1))
            q.sub_(torch.logsumexp(q, dim=-1, keepdim=True))  # log q
            zc = z[i, rows].to(dtype)
            lse_z = torch.logsumexp(zc, dim=-1, keepdim=True)
            diff = torch.sub(q, zc).add_(lse_z)  # log q − log p (a chunk temporary)
            q.exp_()
            loss[i, rows] = diff.mul_(q).sum(dim=-1)
            if direction is not None:
                torch.sub(zc, lse_z, out=diff).exp_()  # p
                q.sub_(diff).neg_()  # p − q
        ctx.direction, ctx.input_dtype = direction, z.dtype
        ctx.save_for_backward(mask)
        return torch.where(mask, loss, torch.zeros_like(loss))

    @staticmethod
    def backward(ctx, grad_out):
        (mask,) = ctx.saved_tensors
        direction, ctx.direction = ctx.direction, None
        if direction is None:
            raise RuntimeError("UnDIAL's loss can be differentiated once (its backward scales its buffer in place)")
        g = torch.where(mask, grad_out.to(direction.dtype), torch.zeros_like(grad_out, dtype=direction.dtype))
        return direction.mul_(g.unsqueeze(-1)).to(ctx.input_dtype), None, None, None, None, None, None


def undial(logits: Tensor, ref_logits: Tensor, labels: Tensor, gamma: float, *,
           num_tokens=None, ref_scratch: bool = False) -> Tensor:
    """UnDIAL: forward ``KL(q ‖ p_θ)``, token mean, with q from :func:`undial_targets`, computed
    chunk by chunk (:class:`_SoftLabelKL`). ``ref_scratch=True``: ``ref_logits`` is the caller's
    temporary and may be overwritten (the gradient's direction is written over it)."""
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    z, y, mask = shift(logits, labels)
    z_ref, _, _ = shift(ref_logits.detach(), labels)
    if z_ref.shape != z.shape:
        raise ValueError(f"ref_logits must have the shape of logits {tuple(logits.shape)}, "
                         f"got {tuple(ref_logits.shape)}")
    differentiable = torch.is_grad_enabled() and z.requires_grad
    per_token = _SoftLabelKL.apply(z, z_ref, y, mask, float(gamma), ref_scratch, differentiable)
    return _reduce(per_token, mask, num_tokens)


def kl_retain(logits: Tensor, ref_logits: Tensor, labels: Tensor, *, num_tokens=None) -> Tensor:
    """KL retain term: token mean of ``KL(p_ref ‖ p_θ)`` over valid positions."""
    z_ref, _, mask = shift(ref_logits.detach(), labels)
    z, _, _ = shift(logits, labels)
    log_ref = torch.log_softmax(_upcast(z_ref), dim=-1)  # (B, T-1, V)
    log_p = torch.log_softmax(_upcast(z), dim=-1)  # (B, T-1, V)
    return _reduce(_kl_per_token(log_ref, log_p), mask, num_tokens)


# ---------------------------------------------------------------------------------------- Unilogit

def _row_chunks(z: Tensor, elements: int | None = None):
    """Yield ``(b, slice)`` over rows of each sequence so that a chunk holds ≤ ``elements``
    (default ``_CHUNK_ELEMENTS``)."""
    rows = max(1, (elements or _CHUNK_ELEMENTS) // z.shape[-1])
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


# ----------------------------------------------------------------- weighted GA, CE-U, max entropy

def wga(logits: Tensor, labels: Tensor, beta: float, *, num_tokens=None) -> Tensor:
    """Weighted gradient ascent: ``mean_t sg(p_y^β) · log p_y`` (β = 0 is GA)."""
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    per_token, mask = token_nll(logits, labels)  # −log p_y, (B, T-1)
    weight = torch.exp(-beta * per_token.detach())  # sg(p_y)^β
    return -_reduce(weight * per_token, mask, num_tokens)


def satimp(logits: Tensor, labels: Tensor, beta1: float, beta2: float, *, num_tokens=None) -> Tensor:
    """SatImp: ``mean_t sg(p_y^β1 (1 − p_y)^β2) · log p_y``; ``1 − p_y = −expm1(log p_y)``, exact
    near ``p_y → 1`` where the weight (β2 > 0) goes to 0."""
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    per_token, mask = token_nll(logits, labels)  # −log p_y, (B, T-1)
    nll_d = per_token.detach()
    weight = torch.exp(-beta1 * nll_d) * (-torch.expm1(-nll_d)).pow(beta2)
    return -_reduce(weight * per_token, mask, num_tokens)


class _CrossEntropyUnlearning(torch.autograd.Function):
    """CE-U per position: ``−Σ_v q_v log p_v`` with ``q = softmax(sg(z))`` restricted to ``v ≠ y``.

    With ``m = log Σ_{v≠y} exp(z_v)`` the value is ``H(q) − log(1 − p_y)`` (both parts finite as
    ``p_y → 1``: ``log(1 − p_y) = m − lse`` is a logsumexp over the non-target logits) and the
    gradient is ``p − q = p_y (e_y − q)``. Forward and backward go over the logits chunk by chunk
    (no (B, T-1, V) copy of q or of the upcast logits); backward keeps the logits and two
    ``(B, T-1)`` vectors."""

    @staticmethod
    def forward(ctx, z, y, mask):
        dtype = compute_dtype(z)
        shape = z.shape[:2]
        loss, m_all, log_p_y = (torch.empty(shape, dtype=dtype, device=z.device) for _ in range(3))
        for i, rows in _row_chunks(z):
            yc = y[i, rows].unsqueeze(-1)  # (n, 1)
            d = z[i, rows].to(dtype).scatter(-1, yc, -math.inf)  # (n, V) the chunk copy
            top = d.amax(dim=-1, keepdim=True)
            d.sub_(top)  # z_v − max over v ≠ y; −inf at y
            w = d.exp()  # unnormalised q, 0 at y
            d.scatter_(-1, yc, 0.0)  # so that w · d is 0 (not nan) at y
            s = w.sum(dim=-1)
            w.mul_(d).nan_to_num_(nan=0.0)  # 0 · (−∞) = 0 for logits at −∞ (a nan logit still shows in s)
            entropy = s.log() - w.sum(dim=-1) / s  # H(q) = log s − Σ w d / s
            m = top.squeeze(-1) + s.log()
            z_y = z[i, rows].gather(-1, yc).squeeze(-1).to(dtype)
            lse = torch.logaddexp(m, z_y)
            loss[i, rows] = entropy - (m - lse)
            m_all[i, rows] = m
            log_p_y[i, rows] = z_y - lse
        ctx.save_for_backward(z, y, mask, m_all, log_p_y)
        return torch.where(mask, loss, torch.zeros_like(loss))

    @staticmethod
    def backward(ctx, grad_out):
        z, y, mask, m, log_p_y = ctx.saved_tensors
        g = torch.where(mask, grad_out.to(m.dtype), torch.zeros_like(m))
        at_y = g * log_p_y.exp()  # g p_y
        grad = torch.empty_like(z, dtype=m.dtype)
        for i, rows in _row_chunks(z):
            out = grad[i, rows]  # (n, V) view
            torch.sub(z[i, rows], m[i, rows].unsqueeze(-1), out=out)
            out.exp_().mul_(-at_y[i, rows].unsqueeze(-1))  # −g p_y q_v (the y entry overwritten next)
            out.scatter_(-1, y[i, rows].unsqueeze(-1), at_y[i, rows].unsqueeze(-1))
        return grad.to(z.dtype), None, None


def ceu(logits: Tensor, labels: Tensor, *, num_tokens=None) -> Tensor:
    """CE-U (cross-entropy unlearning): token mean of ``−Σ_v q_v log p_θ(v)`` against
    ``q = softmax(sg(z))`` with the target logit set to ``−∞``, over the labels given (the
    ``ceu`` method drops each sequence's first answer token before calling this)."""
    if logits.shape[-1] < 2:
        raise ValueError(f"ceu needs a vocabulary of at least 2 tokens, got {logits.shape[-1]}")
    z, y, mask = shift(logits, labels)
    return _reduce(_CrossEntropyUnlearning.apply(z, y, mask), mask, num_tokens)


class _MaxEntropy(torch.autograd.Function):
    """``KL(U_V ‖ softmax(z)) = logsumexp(z) − mean_v z_v − log V`` per position, chunk by chunk in the
    compute dtype (no (B, T-1, V) upcast copy); backward writes ``g·(softmax(z) − 1/V)`` in one exp
    pass, so the two terms never cancel in the input's precision."""

    @staticmethod
    def forward(ctx, z, mask):
        dtype = compute_dtype(z)
        lse = torch.empty(z.shape[:2], dtype=dtype, device=z.device)
        mean = torch.empty_like(lse)
        for i, rows in _row_chunks(z):
            chunk = z[i, rows].to(dtype)
            lse[i, rows] = torch.logsumexp(chunk, dim=-1)
            mean[i, rows] = chunk.mean(dim=-1)
        ctx.save_for_backward(z, mask, lse)
        loss = lse - mean - math.log(z.shape[-1])
        return torch.where(mask, loss, torch.zeros_like(loss))

    @staticmethod
    def backward(ctx, grad_out):
        z, mask, lse = ctx.saved_tensors
        g = torch.where(mask, grad_out.to(lse.dtype), torch.zeros_like(lse))
        uniform = g / z.shape[-1]
        grad = torch.empty_like(z, dtype=lse.dtype)
        for i, rows in _row_chunks(z):
            out = grad[i, rows]  # (n, V) view
            torch.sub(z[i, rows], lse[i, rows].unsqueeze(-1), out=out)
            out.exp_().mul_(g[i, rows].unsqueeze(-1)).sub_(uniform[i, rows].unsqueeze(-1))
        return grad.to(z.dtype), None


def max_entropy(logits: Tensor, labels: Tensor, *, num_tokens=None) -> Tensor:
    """ME (maximum entropy): token mean of ``KL(U_V ‖ p_θ) = −log V − (1/V) Σ_v log p_θ(v)``,
    computed as ``logsumexp(z) − mean_v z_v − log V`` (≥ 0, 0 exactly at the uniform
    distribution)."""
    z, _, mask = shift(logits, labels)
    return _reduce(_MaxEntropy.apply(z, mask), mask, num_tokens)


# -------------------------------------------------------------------------------- RMU (hidden states)

def _masked_square_mean(diff: Tensor, mask: Tensor, num_tokens) -> Tensor:
    """``Σ_{t∈mask} ‖diff_t‖² / (d · count)``; diff ``(B, T, d)`` in the compute dtype."""
    per_position = diff.square().sum(dim=-1)  # (B, T)
    return _reduce(per_position, mask, num_tokens) / diff.shape[-1]


def _check_hidden(hidden: Tensor, mask: Tensor) -> None:
    if hidden.dim() != 3 or mask.shape != hidden.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(f"hidden must be (B, T, d) and mask (B, T) bool; got {tuple(hidden.shape)} "
                         f"and {tuple(mask.shape)} {mask.dtype}")


def logit_margin(logits: Tensor, labels: Tensor, *, num_tokens=None) -> Tensor:
    """PDU's forget term (Entesari et al. 2025): ``mean_t (max_v z_t,v − mean_v z_t,v)²`` over the
    valid positions, which is 0 exactly when the logits are flat (the uniform distribution)."""
    z, _, mask = shift(logits, labels)  # (B, T-1, V)
    rows: dict[int, list[Tensor]] = {}
    for b, part in _row_chunks(z):  # chunks bound the fp32 temporaries
        chunk = _upcast(z[b, part])  # (n, V)
        rows.setdefault(b, []).append((chunk.amax(dim=-1) - chunk.mean(dim=-1)) ** 2)
    per_token = torch.stack([torch.cat(rows[b]) for b in range(z.shape[0])])  # (B, T-1)
    return _reduce(per_token, mask, num_tokens)


def rmu_forget(hidden: Tensor, mask: Tensor, control: Tensor, *, num_tokens=None) -> Tensor:
    """RMU's forget term: ``Σ_{t∈mask} ‖h_t − c‖² / (d · count)`` over hidden states ``(B, T, d)``
    (positions as given, no causal shift), ``c`` the fixed ``(d,)`` control vector (detached);
    ``count`` is the number of masked positions, or ``num_tokens``. With every position valid this
    is ``F.mse_loss(h, c.expand_as(h))``, the WMDP paper's loss."""
    _check_hidden(hidden, mask)
    d = hidden.shape[-1]
    if control.numel() != d:
        raise ValueError(f"control must have {d} elements (the hidden size), got {tuple(control.shape)}")
    dtype = compute_dtype(hidden)
    diff = hidden.to(dtype) - control.detach().reshape(d).to(dtype)  # (B, T, d)
    return _masked_square_mean(diff, mask, num_tokens)


def rmu_retain(hidden: Tensor, ref_hidden: Tensor, mask: Tensor, *, num_tokens=None) -> Tensor:
    """RMU's retain term: ``Σ_{t∈mask} ‖h_t − h_θ0,t‖² / (d · count)`` against the frozen model's
    hidden states ``(B, T, d)`` (detached)."""
    _check_hidden(hidden, mask)
    if ref_hidden.shape != hidden.shape:
        raise ValueError(f"ref_hidden must have shape {tuple(hidden.shape)}, got {tuple(ref_hidden.shape)}")
    dtype = compute_dtype(hidden)
    diff = hidden.to(dtype) - ref_hidden.detach().to(dtype)  # (B, T, d)
    return _masked_square_mean(diff, mask, num_tokens)
