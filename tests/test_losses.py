"""Property tests of the losses against independent formulas (`docs/methods.md`)."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers.loss_inputs import make
from unlearn import losses


def aligned(logits, labels):
    """Independent causal alignment: valid (logit row, target) pairs, flattened."""
    z = logits[:, :-1].reshape(-1, logits.shape[-1])
    y = labels[:, 1:].reshape(-1)
    keep = y != -100
    return z[keep], y[keep]


def bernoulli_kl(p, q):
    return p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))


def test_nll_matches_cross_entropy_on_shifted_pairs():
    logits, labels = make()
    z, y = aligned(logits, labels)
    assert torch.allclose(losses.nll(logits, labels), F.cross_entropy(z, y), atol=1e-12)
    assert torch.allclose(losses.ga(logits, labels), -F.cross_entropy(z, y), atol=1e-12)


def test_sequence_nll_sums_each_sequence():
    logits, labels = make()
    seq = losses.sequence_nll(logits, labels)
    for i in range(logits.shape[0]):
        z, y = aligned(logits[i:i + 1], labels[i:i + 1])
        assert torch.allclose(seq[i], F.cross_entropy(z, y, reduction="sum"), atol=1e-12)


def test_num_tokens_sets_the_divisor():
    logits, labels = make()
    z, y = aligned(logits, labels)
    total = F.cross_entropy(z, y, reduction="sum")
    assert torch.allclose(losses.nll(logits, labels, num_tokens=5.0), total / 5.0, atol=1e-12)


@pytest.mark.parametrize("dtype,expected", [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                            (torch.float32, torch.float32), (torch.float64, torch.float64)])
def test_low_precision_is_upcast(dtype, expected):
    logits, labels = make(dtype=dtype)
    for value in (losses.nll(logits, labels), losses.unilogit(logits, labels),
                  losses.undial(logits, logits, labels, 3.0), losses.kl_retain(logits, logits, labels)):
        assert value.dtype == expected
    assert losses.unilogit_targets(logits, labels).dtype == expected


def test_npo_formula():
    logits, labels = make()
    ref = torch.tensor([4.0, 9.0, 1.0], dtype=torch.float64)
    beta = 0.3
    seq = torch.stack([F.cross_entropy(*aligned(logits[i:i + 1], labels[i:i + 1]), reduction="sum")
                       for i in range(3)])
    expected = (-(2 / beta) * F.logsigmoid(beta * (seq - ref))).mean()
    assert torch.allclose(losses.npo(logits, labels, ref, beta), expected, atol=1e-12)


def test_npo_gradient_approaches_ga_direction_as_beta_vanishes():
    logits, labels = make(seed=3)
    ref = losses.sequence_nll(logits, labels).detach() + torch.tensor([-5.0, 0.0, 8.0], dtype=torch.float64)

    def grad(fn):
        x = logits.clone().requires_grad_(True)
        fn(x).backward()
        return x.grad.flatten()

    g_ga = grad(lambda x: losses.ga(x, labels))
    cosines = [F.cosine_similarity(grad(lambda x, b=b: losses.npo(x, labels, ref, b)), g_ga, dim=0).item()
               for b in (2.0, 0.5, 0.01, 1e-5)]
    assert cosines == sorted(cosines)  # monotonically closer
    assert cosines[0] < 0.99 and cosines[-1] > 1 - 1e-6


def test_unilogit_targets_put_one_over_v_on_target_and_keep_ratios():
    logits, labels = make()
    v = logits.shape[-1]
    q = losses.unilogit_targets(logits, labels).exp()  # (B, T-1, V)
    p = torch.softmax(logits[:, :-1], dim=-1)
    y = labels[:, 1:]
    for b, t in (y != -100).nonzero().tolist():
        target = y[b, t].item()
        assert abs(q[b, t, target].item() - 1 / v) < 1e-12
        others = [w for w in range(v) if w != target]
        ratio_q = q[b, t, others] / q[b, t, others[0]]
        ratio_p = p[b, t, others] / p[b, t, others[0]]
        assert torch.allclose(ratio_q, ratio_p, rtol=1e-10)
        assert abs(q[b, t].sum().item() - 1) < 1e-12


def _literal_kl(logits, labels, reverse):
    """KL between p_θ and the detached soft label, summed over the vocabulary the long way."""
    q = losses.unilogit_targets(logits.detach(), labels).exp()
    p = torch.softmax(logits[:, :-1], dim=-1)
    kl = (p * (p.log() - q.log())).sum(-1) if reverse else (q * (q.log() - p.log())).sum(-1)
    mask = labels[:, 1:] != -100
    return kl[mask].mean()


def _bernoulli_loss(logits, labels, reverse):
    z, y = aligned(logits, labels)
    v = logits.shape[-1]
    p_y = torch.softmax(z, dim=-1).gather(-1, y[:, None]).squeeze(-1)
    u = torch.full_like(p_y, 1 / v)
    return (bernoulli_kl(p_y, u) if reverse else bernoulli_kl(u, p_y)).mean()


@pytest.mark.parametrize("divergence", ["reverse", "forward"])
def test_unilogit_equals_bernoulli_kl_in_value_and_gradient(divergence):
    reverse = divergence == "reverse"
    logits, labels = make(v=13, seed=1)
    results = []
    for fn in (lambda x: losses.unilogit(x, labels, divergence=divergence),
               lambda x: _bernoulli_loss(x, labels, reverse),
               lambda x: _literal_kl(x, labels, reverse)):
        x = logits.clone().requires_grad_(True)
        value = fn(x)
        value.backward()
        results.append((value.detach(), x.grad))
    (v0, g0), (v1, g1), (v2, g2) = results
    assert abs(v0 - v1) < 1e-8 and abs(v0 - v2) < 1e-8
    assert torch.allclose(g0, g1, atol=1e-8) and torch.allclose(g0, g2, atol=1e-8)


def test_unilogit_initial_target_equals_current_target_at_theta0():
    logits, labels = make(seed=2)
    for divergence in ("reverse", "forward"):
        a = losses.unilogit(logits, labels, divergence=divergence)
        b = losses.unilogit(logits, labels, ref_logits=logits.clone(), divergence=divergence)
        assert abs(a - b) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("divergence", ["reverse", "forward"])
def test_unilogit_stable_when_target_probability_tends_to_one(dtype, divergence):
    b, t, v = 2, 5, 50
    logits = torch.full((b, t, v), -1e4, dtype=dtype)
    labels = torch.randint(0, v, (b, t))
    logits[:, :-1].scatter_(-1, labels[:, 1:, None], 1e4)  # p_y == 1 to machine precision
    x = logits.clone().requires_grad_(True)
    loss = losses.unilogit(x, labels, divergence=divergence)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    # The loss is the KL of a (numerically) certain target against 1/V.
    expected = math.log(v) if divergence == "reverse" else math.inf
    if divergence == "reverse":
        assert abs(loss.item() - expected) < 1e-3
    assert torch.isfinite(losses.unilogit_targets(logits, labels)).all()


def test_unilogit_raises_target_probability_below_uniform():
    v = 20
    logits = torch.zeros(1, 2, v, dtype=torch.float64)
    labels = torch.tensor([[-100, 3]])
    logits[0, 0, 3] = -4.0  # p_y well below 1/V
    x = logits.clone().requires_grad_(True)
    losses.unilogit(x, labels).backward()
    p_before = torch.softmax(logits[0, 0], -1)[3]
    p_after = torch.softmax(logits[0, 0] - 0.1 * x.grad[0, 0], -1)[3]
    assert p_before < 1 / v and p_after > p_before


def test_unilogit_lowers_target_probability_above_uniform():
    logits, labels = make(seed=5)
    z, y = aligned(logits, labels)
    x = logits.clone().requires_grad_(True)
    losses.unilogit(x, labels).backward()
    before = torch.softmax(z, -1).gather(-1, y[:, None])
    z2, _ = aligned(logits - 0.01 * x.grad, labels)
    after = torch.softmax(z2, -1).gather(-1, y[:, None])
    above = before > 1 / logits.shape[-1]
    assert (after[above] < before[above]).all()


def test_undial_targets_lower_the_target_logit_by_gamma():
    logits, labels = make()
    gamma = 3.0
    log_q = losses.undial_targets(logits, labels, gamma)
    z, y = aligned(logits, labels)
    expected = torch.log_softmax(z - gamma * F.one_hot(y, logits.shape[-1]), dim=-1)
    mask = labels[:, 1:] != -100
    assert torch.allclose(log_q[mask], expected, atol=1e-12)


def test_undial_is_forward_kl_to_targets():
    logits, labels = make(seed=4)
    ref, _ = make(seed=6)
    gamma = 10.0
    q = losses.undial_targets(ref, labels, gamma).exp()
    p = torch.softmax(logits[:, :-1], -1)
    mask = labels[:, 1:] != -100
    expected = (q * (q.log() - p.log())).sum(-1)[mask].mean()
    assert torch.allclose(losses.undial(logits, ref, labels, gamma), expected, atol=1e-10)


def test_undial_with_gamma_zero_at_theta0_is_zero_with_zero_gradient():
    logits, labels = make()
    x = logits.clone().requires_grad_(True)
    loss = losses.undial(x, logits.clone(), labels, 0.0)
    loss.backward()
    assert abs(loss.item()) < 1e-12 and x.grad.abs().max() < 1e-12


def undial_reference(logits, ref, labels, gamma):
    """UnDIAL by the plain formula: full (B, T-1, V) soft labels and log-softmax, then the token mean."""
    z, y = aligned(logits, labels)
    r, _ = aligned(ref, labels)
    log_q = torch.log_softmax(r - gamma * F.one_hot(y, logits.shape[-1]).to(r.dtype), dim=-1)
    log_p = torch.log_softmax(z, dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum(-1).mean()


@pytest.mark.parametrize("rows_per_chunk", [1, 4, 100])
@pytest.mark.parametrize("scratch", [False, True])
def test_chunked_undial_matches_the_plain_formula(rows_per_chunk, scratch, monkeypatch):
    logits, labels = make(b=3, t=8, v=13, seed=11)  # 7 rows per sequence: chunks of 4 do not divide them
    ref, _ = make(b=3, t=8, v=13, seed=12)
    labels[1, 3] = -100  # a masked position inside a chunk
    weights = torch.linspace(0.5, 2.0, 3, dtype=torch.float64)  # an upstream gradient that is not uniform
    monkeypatch.setattr(losses, "_SOFT_LABEL_CHUNK_ELEMENTS", rows_per_chunk * 13)
    gamma = 2.5

    def total(fn, x):
        return sum(w * fn(x[i:i + 1], i) for i, w in enumerate(weights))

    x = logits.clone().requires_grad_(True)
    ours = total(lambda xi, i: losses.undial(xi, ref[i:i + 1].clone(), labels[i:i + 1], gamma,
                                             ref_scratch=scratch), x)
    ours.backward()
    y = logits.clone().requires_grad_(True)
    expected = total(lambda yi, i: undial_reference(yi, ref[i:i + 1], labels[i:i + 1], gamma), y)
    expected.backward()
    assert torch.allclose(ours, expected, atol=1e-10, rtol=0)
    assert torch.allclose(x.grad, y.grad, atol=1e-10, rtol=0)
    assert (x.grad[:, -1] == 0).all() and (x.grad[1, 2] == 0).all()  # rows that predict nothing

    x = logits.clone().requires_grad_(True)  # the whole batch at once, with num_tokens
    losses.undial(x, ref.clone(), labels, gamma, num_tokens=4.0, ref_scratch=scratch).backward()
    y = logits.clone().requires_grad_(True)
    count = (labels[:, 1:] != -100).sum()
    (undial_reference(y, ref, labels, gamma) * count / 4.0).backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-10, rtol=0)


def test_undial_overwrites_the_reference_only_as_scratch():
    logits, labels = make(seed=13)
    ref, _ = make(seed=14)
    x = logits.clone().requires_grad_(True)
    kept = ref.clone()
    losses.undial(x, kept, labels, 3.0).backward()
    assert torch.equal(kept, ref)
    with torch.no_grad():
        losses.undial(x, kept, labels, 3.0, ref_scratch=True)
    assert torch.equal(kept, ref)  # no gradient wanted: nothing written
    scratch = ref.clone()
    loss = losses.undial(logits.clone().requires_grad_(True), scratch, labels, 3.0, ref_scratch=True)
    assert not torch.equal(scratch, ref)
    loss.backward()
    with pytest.raises(RuntimeError, match="once"):
        loss = losses.undial(x, ref.clone(), labels, 3.0)
        loss.backward(retain_graph=True)
        loss.backward()


def test_kl_retain_formula_and_zero_at_reference():
    logits, labels = make()
    ref, _ = make(seed=9)
    p_ref = torch.softmax(ref[:, :-1], -1)
    p = torch.softmax(logits[:, :-1], -1)
    mask = labels[:, 1:] != -100
    expected = (p_ref * (p_ref.log() - p.log())).sum(-1)[mask].mean()
    assert torch.allclose(losses.kl_retain(logits, ref, labels), expected, atol=1e-10)
    assert abs(losses.kl_retain(logits, logits, labels).item()) < 1e-12


def test_bad_arguments_are_named():
    logits, labels = make()
    with pytest.raises(ValueError, match="divergence"):
        losses.unilogit(logits, labels, divergence="sideways")
    with pytest.raises(ValueError, match="beta"):
        losses.npo(logits, labels, torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="labels"):
        losses.nll(logits, labels[:, :-1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_nll_gradient_matches_cross_entropy(dtype):
    logits, labels = make(dtype=dtype)
    weights = torch.rand(labels.shape[0], generator=torch.Generator().manual_seed(3))  # per-sequence weights

    def grad(fn):
        x = logits.clone().requires_grad_(True)
        fn(x).backward()
        return x.grad

    ours = grad(lambda x: (losses.sequence_nll(x, labels) * weights.to(x.dtype)).sum() + losses.nll(x, labels))

    def reference(x):
        z = x[:, :-1].float() if dtype == torch.bfloat16 else x[:, :-1]
        per = F.cross_entropy(z.transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none")
        return (per.sum(-1) * weights.to(per.dtype)).sum() + per.sum() / (labels[:, 1:] != -100).sum()
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2}[dtype]
    assert ours.dtype == dtype and torch.allclose(ours.double(), grad(reference).double(), atol=tol)
    assert (ours[:, -1] == 0).all()  # the last position predicts nothing
