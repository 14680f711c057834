"""Property tests of SimNPO, DPO, WGA, SatImp, CE-U, ME and RMU's losses against independent formulas
(`docs/methods.md`), and of the methods built on them."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from toy import toy_collate, toy_examples, toy_model

from helpers.loss_inputs import make
from unlearn import engine as engines
from unlearn import loop, losses, methods
from unlearn.methods.ceu import without_first_target


def pairs(logits, labels):
    """Independent causal alignment: ``[(b, t, target)]`` with logit row ``(b, t)`` predicting target."""
    out = []
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            target = int(labels[b, t + 1])
            if target != -100:
                out.append((b, t, target))
    return out


def log_probs(logits, labels):
    """``log p_y`` of every valid pair, by ``log_softmax`` of each row separately."""
    return torch.stack([torch.log_softmax(logits[b, t], dim=-1)[y] for b, t, y in pairs(logits, labels)])


def value_and_grad(fn, *tensors):
    xs = [x.detach().clone().requires_grad_(True) for x in tensors]
    value = fn(*xs)
    grads = torch.autograd.grad(value, xs)
    return value.detach(), grads


def assert_same(fn_a, fn_b, *tensors, atol=1e-10):
    va, ga = value_and_grad(fn_a, *tensors)
    vb, gb = value_and_grad(fn_b, *tensors)
    assert torch.allclose(va, vb, atol=atol, rtol=0), (va, vb)
    for a, b in zip(ga, gb):
        assert torch.allclose(a, b, atol=atol, rtol=0), (a - b).abs().max()


# ------------------------------------------------------------------------------- token-level losses

def wga_reference(logits, labels, beta):
    lp = log_probs(logits, labels)
    return (lp.detach().exp() ** beta * lp).mean()


def satimp_reference(logits, labels, beta1, beta2):
    lp = log_probs(logits, labels)
    p = lp.detach().exp()
    return (p ** beta1 * (1 - p) ** beta2 * lp).mean()


def ceu_reference(logits, labels):
    terms = []
    for b, t, y in pairs(logits, labels):
        z = logits[b, t]
        target = z.detach().clone()
        target[y] = -math.inf
        q = torch.softmax(target, dim=-1)
        terms.append(-(q * torch.log_softmax(z, dim=-1)).sum())
    return torch.stack(terms).mean()


def max_entropy_reference(logits, labels):
    v = logits.shape[-1]
    uniform = torch.full((v,), 1 / v, dtype=logits.dtype)
    terms = [(uniform * (uniform.log() - torch.log_softmax(logits[b, t], dim=-1))).sum()
             for b, t, _ in pairs(logits, labels)]
    return torch.stack(terms).mean()


TOKEN_LOSSES = {
    "wga": (lambda x, y, **kw: losses.wga(x, y, 1.5, **kw), lambda x, y: wga_reference(x, y, 1.5)),
    "satimp": (lambda x, y, **kw: losses.satimp(x, y, 5.0, 1.0, **kw), lambda x, y: satimp_reference(x, y, 5.0, 1.0)),
    "satimp-b2": (lambda x, y, **kw: losses.satimp(x, y, 0.5, 2.5, **kw),
                  lambda x, y: satimp_reference(x, y, 0.5, 2.5)),
    "ceu": (lambda x, y, **kw: losses.ceu(x, y, **kw), ceu_reference),
    "max_entropy": (lambda x, y, **kw: losses.max_entropy(x, y, **kw), max_entropy_reference),
}
TOKEN = sorted(TOKEN_LOSSES)


@pytest.mark.parametrize("name", TOKEN)
@pytest.mark.parametrize("seed", [0, 1])
def test_token_losses_match_the_independent_formula_in_value_and_gradient(name, seed):
    ours, reference = TOKEN_LOSSES[name]
    logits, labels = make(seed=seed, scale=1.5)
    assert_same(lambda x: ours(x, labels), lambda x: reference(x, labels), logits)


@pytest.mark.parametrize("name", TOKEN)
def test_token_losses_ignored_positions_change_nothing(name):
    ours, _ = TOKEN_LOSSES[name]
    logits, labels = make(seed=2)
    rows = torch.zeros(labels.shape, dtype=torch.bool)
    rows[:, :-1] = labels[:, 1:] == -100
    rows[:, -1] = True  # the last row predicts nothing
    noisy = logits.clone()
    noisy[rows] = torch.randn_like(noisy[rows]) * 50
    labels2 = labels.clone()
    labels2[:, 0] = 3  # the first label is never predicted
    v1, (g1,) = value_and_grad(lambda x: ours(x, labels), logits)
    v2, (g2,) = value_and_grad(lambda x: ours(x, labels2), noisy)
    assert torch.allclose(v1, v2, atol=1e-12)
    assert torch.allclose(g1[~rows], g2[~rows], atol=1e-12) and g2[rows].abs().max() == 0


@pytest.mark.parametrize("name", TOKEN)
def test_token_losses_divisor_makes_half_batches_add_up(name):
    ours, _ = TOKEN_LOSSES[name]
    logits, labels = make(b=4, seed=3)
    count = (labels[:, 1:] != -100).sum()
    full = ours(logits, labels)
    halves = ours(logits[:2], labels[:2], num_tokens=count) + ours(logits[2:], labels[2:], num_tokens=count)
    assert torch.allclose(full, halves, atol=1e-12)
    assert torch.allclose(ours(logits, labels, num_tokens=5.0), full * count / 5.0, atol=1e-12)


@pytest.mark.parametrize("name", TOKEN)
@pytest.mark.parametrize("dtype,expected", [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                            (torch.float32, torch.float32), (torch.float64, torch.float64)])
def test_token_losses_compute_in_at_least_float32(name, dtype, expected):
    ours, _ = TOKEN_LOSSES[name]
    logits, labels = make(dtype=dtype)
    value, (grad,) = value_and_grad(lambda x: ours(x, labels), logits)
    assert value.dtype == expected and grad.dtype == dtype
    if dtype in (torch.bfloat16, torch.float16):  # the float32 computation, its gradient rounded once
        exact, (grad32,) = value_and_grad(lambda x: ours(x, labels), logits.float())
        assert torch.equal(value, exact) and torch.equal(grad, grad32.to(dtype))


@pytest.mark.parametrize("name", ["ceu", "max_entropy"])
def test_chunked_kernels_do_not_depend_on_the_chunk_size(name, monkeypatch):
    ours, _ = TOKEN_LOSSES[name]
    logits, labels = make(b=3, t=9, v=13, seed=4)
    v1, (g1,) = value_and_grad(lambda x: ours(x, labels), logits)
    monkeypatch.setattr(losses, "_CHUNK_ELEMENTS", 2 * 13)  # two rows per chunk
    v2, (g2,) = value_and_grad(lambda x: ours(x, labels), logits)
    assert torch.allclose(v1, v2, atol=1e-12) and torch.allclose(g1, g2, atol=1e-12)


def certain(dtype, b=2, t=5, v=50, margin=1e4, seed=0):
    """Logits whose target has all the mass (to machine precision) at every position."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    logits[:, :-1].scatter_(-1, labels[:, 1:, None], margin)
    return logits, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_weighted_ga_at_certain_targets(dtype):
    logits, labels = certain(dtype)
    for fn in (lambda x: losses.wga(x, labels, 1.0), lambda x: losses.satimp(x, labels, 5.0, 1.0)):
        value, (grad,) = value_and_grad(fn, logits)
        assert torch.isfinite(value) and torch.isfinite(grad).all()
        assert abs(value.item()) < 1e-6 and grad.abs().max() < 1e-6  # log p_y = 0: nothing left to ascend


def test_satimp_weight_vanishes_as_the_target_becomes_certain():
    # p_y = 1 − ε: WGA's weight is ≈ 1, SatImp's (β1 = 0, β2 = 1) is ε, the (1 − p_y) importance factor
    eps, v = 1e-9, 50
    logits = torch.zeros(2, 5, v, dtype=torch.float64)
    labels = torch.randint(0, v, (2, 5), generator=torch.Generator().manual_seed(0))
    logits[:, :-1].scatter_(-1, labels[:, 1:, None], math.log((v - 1) / eps - (v - 1)))
    lp = log_probs(logits, labels)
    assert torch.allclose(-torch.expm1(lp), torch.full_like(lp, eps), rtol=1e-6, atol=0)
    assert torch.allclose(losses.satimp(logits, labels, 0.0, 1.0), (eps * lp).mean(), rtol=1e-6)
    assert torch.allclose(losses.wga(logits, labels, 1.0), ((1 - eps) * lp).mean(), rtol=1e-9)


def test_weighted_ga_special_cases():
    logits, labels = make(seed=5)
    assert torch.allclose(losses.wga(logits, labels, 0.0), losses.ga(logits, labels), atol=1e-12)
    assert torch.allclose(losses.satimp(logits, labels, 2.0, 0.0), losses.wga(logits, labels, 2.0), atol=1e-12)
    assert losses.wga(logits, labels, 1.0) < 0 and losses.satimp(logits, labels, 5.0, 1.0) < 0
    with pytest.raises(ValueError, match="beta must be >= 0"):
        losses.wga(logits, labels, -1.0)
    with pytest.raises(ValueError, match="beta2 must be >= 0"):
        losses.satimp(logits, labels, 1.0, -0.5)


def test_ceu_equals_soft_target_cross_entropy_of_the_public_code():
    """open-unlearning's CE-U: ``F.cross_entropy(valid_logits, softmax(valid_logits with y = -inf))``."""
    logits, labels = make(seed=6, scale=2.0)
    z = logits[:, :-1][labels[:, 1:] != -100]
    y = labels[:, 1:][labels[:, 1:] != -100]
    target = F.softmax(z.clone().scatter_(-1, y[:, None], -math.inf), dim=-1)
    assert torch.allclose(losses.ceu(logits, labels), F.cross_entropy(z, target), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_ceu_finite_when_the_target_has_almost_all_mass(dtype):
    logits, labels = certain(dtype)
    value, (grad,) = value_and_grad(lambda x: losses.ceu(x, labels), logits)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    # −log(1 − p_y) ≈ 1e4 dominates; the gradient p_y (e_y − q) pushes the target down
    assert 9e3 < value.item() < 1.1e4
    y = labels[:, 1:]
    assert (grad[:, :-1].float().gather(-1, y[..., None]) > 0).all()
    # moderately certain targets, against the float64 formula written out
    logits, labels = certain(torch.float64, margin=25.0)
    assert torch.allclose(losses.ceu(logits, labels), ceu_reference(logits, labels), atol=1e-9)


def test_ceu_with_logits_at_minus_infinity():
    logits, labels = make(seed=19)
    banned = logits.clone()
    banned[..., 7] = -math.inf  # a token the model can never emit (never a target here)
    labels = labels.masked_fill(labels == 7, 3)
    value, (grad,) = value_and_grad(lambda x: losses.ceu(x, labels), banned)
    assert torch.isfinite(value) and torch.isfinite(grad).all() and grad[..., 7].abs().max() == 0
    # the same as the loss over the vocabulary without that token
    drop = torch.cat([logits[..., :7], logits[..., 8:]], dim=-1)
    assert torch.allclose(value, ceu_reference(drop, torch.where(labels > 7, labels - 1, labels)), atol=1e-12)


def test_ceu_gradient_is_p_minus_q():
    logits, labels = make(seed=7)
    _, (grad,) = value_and_grad(lambda x: losses.ceu(x, labels), logits)
    ps = pairs(logits, labels)
    for b, t, y in ps:
        p = torch.softmax(logits[b, t], -1)
        q = torch.softmax(logits[b, t].clone().index_fill_(0, torch.tensor([y]), -math.inf), -1)
        assert torch.allclose(grad[b, t], (p - q) / len(ps), atol=1e-12)


def test_max_entropy_is_nonnegative_and_zero_exactly_at_uniform():
    logits, labels = make(seed=8)
    assert losses.max_entropy(logits, labels) > 0
    flat = torch.randn(3, 7, 1, dtype=torch.float64).expand(3, 7, 11).contiguous() * 5  # uniform rows
    value, (grad,) = value_and_grad(lambda x: losses.max_entropy(x, labels), flat)
    assert abs(value.item()) < 1e-12 and grad.abs().max() < 1e-12
    # per token: −log V − (1/V) Σ_v log p_v, written with log_softmax over the whole batch
    z, y = logits[:, :-1], labels[:, 1:]
    cross = -(torch.log_softmax(z, -1).mean(-1))[y != -100]
    assert torch.allclose(losses.max_entropy(logits, labels), (cross - math.log(11)).mean(), atol=1e-12)


# ---------------------------------------------------------------------------------------- SimNPO

def simnpo_reference(logits, labels, beta, delta):
    per_seq = []
    for b in range(labels.shape[0]):
        lp = [torch.log_softmax(logits[b, t], -1)[y] for bb, t, y in pairs(logits, labels) if bb == b]
        if lp:
            mean_nll = -torch.stack(lp).sum() / len(lp)
            per_seq.append(-(2 / beta) * F.logsigmoid(beta * (mean_nll - delta)))
    return torch.stack(per_seq).mean()


@pytest.mark.parametrize("beta,delta", [(4.5, 0.0), (0.5, 1.0), (2.0, 3.0)])
def test_simnpo_matches_the_hand_computation(beta, delta):
    logits, labels = make(b=4, seed=9, scale=1.5)
    labels[2, :] = -100  # a sequence with no valid token: contributes nothing, not counted
    assert_same(lambda x: losses.simnpo(x, labels, beta, delta), lambda x: simnpo_reference(x, labels, beta, delta),
                logits)


def test_simnpo_margin_gamma_is_beta_times_delta():
    logits, labels = make(seed=10)
    beta, delta = 2.5, 0.4
    gamma = beta * delta
    mean_nll = losses.sequence_nll(logits, labels) / (labels[:, 1:] != -100).sum(-1)
    paper = (-(2 / beta) * F.logsigmoid(beta * mean_nll - gamma)).mean()  # σ(−(β/|y|) log π − γ)
    assert torch.allclose(losses.simnpo(logits, labels, beta, delta), paper, atol=1e-12)


def test_simnpo_num_sequences_divisor_and_bad_beta():
    logits, labels = make(b=4, seed=11)
    full = losses.simnpo(logits, labels, 1.0)
    halves = (losses.simnpo(logits[:2], labels[:2], 1.0, num_sequences=4)
              + losses.simnpo(logits[2:], labels[2:], 1.0, num_sequences=4))
    assert torch.allclose(full, halves, atol=1e-12)
    assert losses.simnpo(logits.bfloat16(), labels, 1.0).dtype == torch.float32
    with pytest.raises(ValueError, match="beta must be > 0"):
        losses.simnpo(logits, labels, 0.0)


# ------------------------------------------------------------------------------------------- DPO

def sequence_nll_reference(logits, labels):
    per_seq = [[] for _ in range(labels.shape[0])]
    for b, t, y in pairs(logits, labels):
        per_seq[b].append(-torch.log_softmax(logits[b, t], -1)[y])
    return torch.stack([torch.stack(terms).sum() for terms in per_seq])


def dpo_inputs(seed=12):
    logits_w, labels_w = make(b=3, t=6, v=11, seed=seed)
    logits_l, labels_l = make(b=3, t=8, v=11, seed=seed + 1)
    ref_w = torch.tensor([5.0, 12.0, 3.0], dtype=torch.float64)
    ref_l = torch.tensor([20.0, 4.0, 9.0], dtype=torch.float64)
    return logits_w, labels_w, logits_l, labels_l, ref_w, ref_l


def test_dpo_matches_the_hand_computation():
    logits_w, labels_w, logits_l, labels_l, ref_w, ref_l = dpo_inputs()
    beta = 0.7

    def reference(w, lo):
        margin = (ref_w - sequence_nll_reference(w, labels_w)) - (ref_l - sequence_nll_reference(lo, labels_l))
        return (-(2 / beta) * torch.log(torch.sigmoid(beta * margin))).mean()

    assert_same(lambda w, lo: losses.dpo(w, labels_w, lo, labels_l, ref_w, ref_l, beta), reference, logits_w, logits_l)


def test_dpo_at_the_reference_pushes_preferred_up_and_rejected_down_equally():
    """At θ = θ0 the margin is 0: L = (2/β) log 2, and the gradients are ± the summed-NLL gradients / B."""
    logits_w, labels_w, logits_l, labels_l, _, _ = dpo_inputs(seed=14)
    ref_w, ref_l = losses.sequence_nll(logits_w, labels_w), losses.sequence_nll(logits_l, labels_l)
    beta = 0.3
    value, (g_w, g_l) = value_and_grad(lambda w, lo: losses.dpo(w, labels_w, lo, labels_l, ref_w, ref_l, beta),
                                       logits_w, logits_l)
    assert abs(value.item() - (2 / beta) * math.log(2)) < 1e-12
    _, (n_w,) = value_and_grad(lambda x: losses.sequence_nll(x, labels_w).sum() / 3, logits_w)
    _, (n_l,) = value_and_grad(lambda x: losses.sequence_nll(x, labels_l).sum() / 3, logits_l)
    assert torch.allclose(g_w, n_w, atol=1e-12) and torch.allclose(g_l, -n_l, atol=1e-12)


def test_dpo_identical_pair_has_zero_gradient_and_swapping_flips_the_margin():
    logits, labels = make(seed=15)
    ref = torch.tensor([3.0, 8.0, 1.0], dtype=torch.float64)
    beta = 1.3
    value, (g_w, g_l) = value_and_grad(lambda w, lo: losses.dpo(w, labels, lo, labels, ref, ref, beta), logits, logits)
    assert abs(value.item() - (2 / beta) * math.log(2)) < 1e-12
    assert torch.allclose(g_w + g_l, torch.zeros_like(g_w), atol=1e-12)  # the same tensor: contributions cancel
    logits_w, labels_w, logits_l, labels_l, ref_w, ref_l = dpo_inputs()
    forward = losses.dpo(logits_w, labels_w, logits_l, labels_l, ref_w, ref_l, beta)
    swapped = losses.dpo(logits_l, labels_l, logits_w, labels_w, ref_l, ref_w, beta)
    margin = ((ref_w - losses.sequence_nll(logits_w, labels_w)) - (ref_l - losses.sequence_nll(logits_l, labels_l)))
    assert torch.allclose(forward - swapped, -2 * margin.mean(), atol=1e-10)  # softplus(−x) − softplus(x) = −x


def test_dpo_counting_divisor_and_checks():
    logits_w, labels_w, logits_l, labels_l, ref_w, ref_l = dpo_inputs()
    empty = labels_l.clone()
    empty[1] = -100  # pair 1 has no rejected answer: it does not count
    full = losses.dpo(logits_w, labels_w, logits_l, empty, ref_w, ref_l, 0.5)
    kept = torch.tensor([0, 2])
    alone = losses.dpo(logits_w[kept], labels_w[kept], logits_l[kept], labels_l[kept], ref_w[kept], ref_l[kept], 0.5)
    assert torch.allclose(full, alone, atol=1e-12)
    whole = losses.dpo(logits_w, labels_w, logits_l, labels_l, ref_w, ref_l, 0.5)
    parts = sum(losses.dpo(logits_w[s], labels_w[s], logits_l[s], labels_l[s], ref_w[s], ref_l[s], 0.5,
                           num_sequences=3) for s in (slice(0, 1), slice(1, 3)))
    assert torch.allclose(whole, parts, atol=1e-12)
    ref_needs_grad, x = ref_w.clone().requires_grad_(True), logits_w.clone().requires_grad_(True)
    losses.dpo(x, labels_w, logits_l, labels_l, ref_needs_grad, ref_l, 0.5).backward()
    assert ref_needs_grad.grad is None and x.grad is not None
    with pytest.raises(ValueError, match="ref_nll_l must have shape"):
        losses.dpo(logits_w, labels_w, logits_l, labels_l, ref_w, ref_l[:2], 0.5)
    with pytest.raises(ValueError, match="pair up"):
        losses.dpo(logits_w, labels_w, logits_l[:2], labels_l[:2], ref_w, ref_l, 0.5)
    with pytest.raises(ValueError, match="beta must be > 0"):
        losses.dpo(logits_w, labels_w, logits_l, labels_l, ref_w, ref_l, -1.0)


# ------------------------------------------------------------------------------------------- RMU

def hidden_inputs(dtype=torch.float64, seed=16, b=3, t=6, d=5):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, d, generator=g, dtype=torch.float64).to(dtype)
    ref = torch.randn(b, t, d, generator=g, dtype=torch.float64).to(dtype)
    control = torch.rand(d, generator=g, dtype=torch.float64)
    control = (control / control.norm() * 20).to(dtype)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, :2] = False
    mask[2, -3:] = False
    return hidden, ref, control, mask


def masked_mse_reference(hidden, target, mask):
    total, count = 0.0, 0
    for b in range(hidden.shape[0]):
        for t in range(hidden.shape[1]):
            if mask[b, t]:
                total = total + ((hidden[b, t] - target[b, t]) ** 2).sum()
                count += 1
    return total / (hidden.shape[-1] * count)


def test_rmu_losses_match_the_explicit_formula():
    hidden, ref, control, mask = hidden_inputs()
    assert_same(lambda h: losses.rmu_forget(h, mask, control),
                lambda h: masked_mse_reference(h, control.expand_as(h), mask), hidden, atol=1e-12)
    assert_same(lambda h: losses.rmu_retain(h, ref, mask),
                lambda h: masked_mse_reference(h, ref, mask), hidden, atol=1e-12)


def test_rmu_losses_equal_mse_loss_when_every_position_is_valid():
    hidden, ref, control, _ = hidden_inputs()
    every = torch.ones(hidden.shape[:2], dtype=torch.bool)
    wmdp = F.mse_loss(hidden, control.reshape(1, 1, -1).expand_as(hidden))  # the WMDP code's forget loss
    assert torch.allclose(losses.rmu_forget(hidden, every, control), wmdp, atol=1e-12)
    assert torch.allclose(losses.rmu_forget(hidden, every, control.reshape(1, 1, -1)), wmdp, atol=1e-12)
    assert torch.allclose(losses.rmu_retain(hidden, ref, every), F.mse_loss(hidden, ref), atol=1e-12)


def test_rmu_masked_positions_change_nothing_and_references_get_no_gradient():
    hidden, ref, control, mask = hidden_inputs()
    noisy, noisy_ref = hidden.clone(), ref.clone()
    noisy[~mask] = 1e3
    noisy_ref[~mask] = -1e3
    for fn in (lambda h, r, c: losses.rmu_forget(h, mask, c), lambda h, r, c: losses.rmu_retain(h, r, mask)):
        v1, (g1,) = value_and_grad(lambda h, fn=fn: fn(h, ref, control), hidden)
        h2, r2, c2 = (x.clone().requires_grad_(True) for x in (noisy, noisy_ref, control))
        v2 = fn(h2, r2, c2)
        v2.backward()
        assert torch.allclose(v1, v2, atol=1e-12)
        assert torch.allclose(g1[mask], h2.grad[mask], atol=1e-12) and h2.grad[~mask].abs().max() == 0
        assert r2.grad is None and c2.grad is None


def test_rmu_divisor_dtype_and_checks():
    hidden, ref, control, mask = hidden_inputs(b=4)
    count = mask.sum()
    full = losses.rmu_forget(hidden, mask, control)
    halves = (losses.rmu_forget(hidden[:2], mask[:2], control, num_tokens=count)
              + losses.rmu_forget(hidden[2:], mask[2:], control, num_tokens=count))
    assert torch.allclose(full, halves, atol=1e-12)
    full = losses.rmu_retain(hidden, ref, mask)
    halves = (losses.rmu_retain(hidden[:2], ref[:2], mask[:2], num_tokens=count)
              + losses.rmu_retain(hidden[2:], ref[2:], mask[2:], num_tokens=count))
    assert torch.allclose(full, halves, atol=1e-12)
    h16, r16, c16, _ = hidden_inputs(dtype=torch.bfloat16)
    m = torch.ones(h16.shape[:2], dtype=torch.bool)
    assert losses.rmu_forget(h16, m, c16).dtype == torch.float32
    assert torch.allclose(losses.rmu_retain(h16, r16, m), F.mse_loss(h16.float(), r16.float()), atol=1e-6)
    with pytest.raises(ValueError, match="control must have 5 elements"):
        losses.rmu_forget(hidden, mask, control[:3])
    with pytest.raises(ValueError, match="mask"):
        losses.rmu_forget(hidden, mask[:, :3], control)
    with pytest.raises(ValueError, match="ref_hidden must have shape"):
        losses.rmu_retain(hidden, ref[:2], mask)


def test_open_unlearning_rmu_reduction_differs_when_sequences_have_unequal_counts():
    """open-unlearning's ``compute_activation_loss`` (transcribed): the ``(b,)`` sums divided by ``(b, 1)``
    counts broadcast to ``(b, b)``, so it is ``mean_b(S_b) · mean_b(1/n_b)``; equal to ours only when
    every sequence has the same number of masked positions."""
    def open_unlearning(a, b, mask):
        squared = F.mse_loss(a, b, reduction="none")
        sums = (squared * mask.unsqueeze(-1).expand_as(squared)).mean(dim=2).sum(dim=1)
        counts = mask.sum(dim=-1, keepdim=True)
        return (sums / counts).mean()

    hidden, ref, _, mask = hidden_inputs()
    equal = torch.ones_like(mask)
    equal[:, -2:] = False
    assert torch.allclose(open_unlearning(hidden, ref, equal), losses.rmu_retain(hidden, ref, equal), atol=1e-12)
    theirs = open_unlearning(hidden, ref, mask)
    sums = torch.stack([((hidden[i] - ref[i]) ** 2).mean(-1)[mask[i]].sum() for i in range(3)])
    counts = mask.sum(-1).double()
    assert torch.allclose(theirs, sums.mean() * (1 / counts).mean(), atol=1e-12)
    assert not torch.allclose(theirs, losses.rmu_retain(hidden, ref, mask), atol=1e-6)


# --------------------------------------------------------------------------------------- methods

def test_ceu_method_drops_each_sequences_first_predicted_answer_token():
    labels = torch.tensor([[-100, -100, 4, 5, 6], [7, 8, 9, -100, -100], [-100, -100, -100, -100, 2],
                           [-100] * 5])
    dropped = without_first_target(labels)
    assert dropped.tolist() == [[-100, -100, -100, 5, 6], [7, -100, 9, -100, -100], [-100] * 5, [-100] * 5]
    logits, _ = make(b=4, t=5, v=11, seed=17)
    method = methods.make("ceu")
    assert torch.allclose(method.forget_loss(logits, labels), losses.ceu(logits, dropped), atol=1e-12)
    kept = methods.make("ceu", {"ignore_first_token": False})
    assert torch.allclose(kept.forget_loss(logits, labels), losses.ceu(logits, labels), atol=1e-12)
    # under the loop the divisor counts every answer token, the dropped ones included
    count = (labels[:, 1:] != -100).sum()
    ours = method.forget_loss(logits, labels, num_tokens=count)
    assert torch.allclose(ours, losses.ceu(logits, dropped) * (dropped[:, 1:] != -100).sum() / count, atol=1e-12)


def test_methods_call_their_losses_with_their_defaults():
    logits, labels = make(seed=18)
    assert torch.allclose(methods.make("simnpo").forget_loss(logits, labels), losses.simnpo(logits, labels, 4.5, 0.0))
    assert torch.allclose(methods.make("wga").forget_loss(logits, labels), losses.wga(logits, labels, 1.0))
    assert torch.allclose(methods.make("satimp").forget_loss(logits, labels), losses.satimp(logits, labels, 5.0, 1.0))
    assert torch.allclose(methods.make("me").forget_loss(logits, labels), losses.max_entropy(logits, labels))
    for name in ("simnpo", "wga", "satimp", "ceu", "me"):
        method = methods.make(name)
        assert not method.needs_ref_model and not method.needs_ref_nll


def test_new_method_validation():
    with pytest.raises(ValueError, match="beta must be a number > 0"):
        methods.make("simnpo", {"beta": 0})
    with pytest.raises(ValueError, match="delta must be a number >= 0"):
        methods.make("simnpo", {"delta": -1})
    with pytest.raises(ValueError, match="beta must be a number >= 0"):
        methods.make("wga", {"beta": -1})
    for field in ("beta1", "beta2"):
        with pytest.raises(ValueError, match=f"{field} must be a number >= 0"):
            methods.make("satimp", {field: -0.1})
    with pytest.raises(ValueError, match="ignore_first_token must be true or false"):
        methods.make("ceu", {"ignore_first_token": 1})
    with pytest.raises(ValueError, match="unknown parameter 'beta'"):
        methods.make("me", {"beta": 1.0})


def one_update(name, params, accum, forget):
    model = toy_model(0)
    method = methods.make(name, params)
    engine = engines.PlainEngine(model, torch.optim.SGD(model.parameters(), lr=0.5), accumulation_steps=accum)
    forget = loop.with_index(forget)
    ref = copy.deepcopy(model).eval() if method.needs_ref_model else None
    metrics = loop.update(engine, method, forget, None, toy_collate, ref_model=ref)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), metrics


# On the random toy model p_y ≈ 1/40, where SimNPO at β = 4.5 and SatImp at β1 = 5 have vanishing
# gradients (σ(−β·log 40), p_y^5); these parameters make the update large enough to compare.
SPLIT = [("simnpo", {"beta": 0.5, "delta": 1.0}), ("satimp", {"beta1": 0.5}), ("ceu", {}),
         ("ceu", {"ignore_first_token": False}), ("wga", {}), ("me", {})]


@pytest.mark.parametrize("name,params", SPLIT, ids=[n + "".join(f"-{k}={v}" for k, v in p.items()) for n, p in SPLIT])
def test_update_does_not_depend_on_how_the_batch_is_split(name, params):
    forget = toy_examples(8, seed=1)
    start = torch.cat([p.detach().flatten() for p in toy_model(0).parameters()])
    reference, ref_metrics = one_update(name, params, 1, forget)
    assert (reference - start).abs().max() > 1e-4
    for accum in (2, 4, 8):  # micro-batches of 4, 2, 1
        weights, metrics = one_update(name, params, accum, forget)
        assert torch.allclose(weights, reference, atol=1e-10, rtol=0), accum
        for key, value in ref_metrics.items():
            assert math.isclose(metrics[key], value, abs_tol=1e-9), key
