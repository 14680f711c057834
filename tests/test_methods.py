"""Contract tests, parametrized over every registered method (and its ablation options)."""

import dataclasses

import pytest
import torch

from unlearn import losses, methods

VARIANTS = [(name, {}) for name in methods.names()] + [
    ("unilogit", {"target": "initial"}),
    ("unilogit", {"divergence": "forward"}),
    ("unilogit", {"target": "initial", "divergence": "forward"}),
    ("npo", {"beta": 2.0}),
    ("undial", {"gamma": 0.5}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in params.items()) for name, params in VARIANTS]


def inputs(seed=0, b=3, t=8, v=17):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g, dtype=torch.float64) * 2
    ref = torch.randn(b, t, v, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[:, :2] = -100
    labels[1, -3:] = -100
    return logits, ref, labels


def preferred(ref, labels):
    """A preference method's batch of preferred answers (another fixed batch) and its reference NLLs."""
    logits = ref.detach().flip(0)
    return {"preferred_logits": logits, "preferred_labels": labels.flip(0),
            "ref_preferred_nll": losses.sequence_nll(logits, labels.flip(0)) + 0.5}


def steered(logits, labels):
    """A hidden-state method's inputs, the logits standing in for hidden states (d = V): the positions
    whose next token is trained, and a control vector."""
    positions = torch.zeros(labels.shape, dtype=torch.bool)
    positions[:, :-1] = labels[:, 1:] != -100
    control = torch.linspace(-1.0, 1.0, logits.shape[-1], dtype=logits.dtype)
    return {"hidden": logits, "positions": positions, "control": control}


def forget_loss(method, logits, labels, ref):
    ref_nll = losses.sequence_nll(ref, labels)
    return method.forget_loss(logits, labels, ref_logits=ref, ref_sequence_nll=ref_nll, **preferred(ref, labels),
                              **steered(logits, labels))


def loss_and_grad(method, logits, labels, ref):
    x = logits.clone().requires_grad_(True)
    value = forget_loss(method, x, labels, ref)
    value.backward()
    return value.detach(), x.grad


def ignored_logit_positions(labels):
    """Logit rows whose prediction is ignored: the last row, and every row before a -100 label."""
    rows = torch.zeros(labels.shape, dtype=torch.bool)
    rows[:, :-1] = labels[:, 1:] == -100
    rows[:, -1] = True
    return rows


@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_finite_scalar(name, params):
    method = methods.make(name, params)
    logits, ref, labels = inputs()
    value = forget_loss(method, logits, labels, ref)
    assert value.dim() == 0 and torch.isfinite(value)


@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_ignored_positions_change_nothing(name, params):
    method = methods.make(name, params)
    logits, ref, labels = inputs()
    value, grad = loss_and_grad(method, logits, labels, ref)
    rows = ignored_logit_positions(labels)
    noisy, noisy_ref, noisy_labels = logits.clone(), ref.clone(), labels.clone()
    noisy[rows] = torch.randn_like(noisy[rows]) * 50
    noisy_ref[rows] = torch.randn_like(noisy_ref[rows]) * 50
    noisy_labels[:, 0] = 5  # the first label is never predicted
    value2, grad2 = loss_and_grad(method, noisy, noisy_labels, noisy_ref)
    assert torch.allclose(value, value2, atol=1e-12)
    assert torch.allclose(grad[~rows], grad2[~rows], atol=1e-12)
    assert grad2[rows].abs().max() == 0


@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_extra_right_padding_changes_nothing(name, params):
    method = methods.make(name, params)
    logits, ref, labels = inputs()
    pad = 4
    logits_p = torch.cat([logits, torch.randn(3, pad, logits.shape[-1], dtype=logits.dtype)], dim=1)
    ref_p = torch.cat([ref, torch.randn(3, pad, ref.shape[-1], dtype=ref.dtype)], dim=1)
    labels_p = torch.cat([labels, torch.full((3, pad), -100)], dim=1)
    value, grad = loss_and_grad(method, logits, labels, ref)
    value_p, grad_p = loss_and_grad(method, logits_p, labels_p, ref_p)
    assert torch.allclose(value, value_p, atol=1e-12)
    assert torch.allclose(grad, grad_p[:, :-pad], atol=1e-12)


@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_gradient_reaches_logits_never_the_reference(name, params):
    method = methods.make(name, params)
    logits, ref, labels = inputs()
    x = logits.clone().requires_grad_(True)
    r = ref.clone().requires_grad_(True)
    ref_nll = losses.sequence_nll(ref, labels).requires_grad_(True)
    others = preferred(ref, labels)
    others["ref_preferred_nll"].requires_grad_(True)
    value = method.forget_loss(x, labels, ref_logits=r, ref_sequence_nll=ref_nll, **others, **steered(x, labels))
    value.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert r.grad is None and ref_nll.grad is None and others["ref_preferred_nll"].grad is None


@pytest.mark.parametrize("name", methods.names())
def test_config_validation_names_the_field(name):
    cls = methods.get(name)
    assert cls.name == name
    for field, bad in (("forget_weight", -1.0), ("retain_weight", -0.5), ("retain", "mse"),
                       ("forget_weight", float("inf")), ("retain_weight", True)):
        with pytest.raises(ValueError, match=field):
            cls(**{field: bad})
    with pytest.raises(ValueError, match="unknown parameter 'alpha'.*allowed: forget_weight"):
        methods.make(name, {"alpha": 1})
    config = methods.make(name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.forget_weight = 2.0


def test_method_specific_validation():
    with pytest.raises(ValueError, match="beta must be a number > 0"):
        methods.make("npo", {"beta": 0})
    with pytest.raises(ValueError, match="gamma must be a number >= 0"):
        methods.make("undial", {"gamma": -1})
    with pytest.raises(ValueError, match="target must be one of current, initial"):
        methods.make("unilogit", {"target": "oracle"})
    with pytest.raises(ValueError, match="divergence"):
        methods.make("unilogit", {"divergence": "js"})
    with pytest.raises(ValueError, match="retain must be 'nll' for gd"):
        methods.make("gd", {"retain": "none"})


def test_unknown_method_lists_known_ones():
    known = "ceu, ga, gd, idkdpo, idknll, me, npo, pdu, rmu, satimp, simnpo, undial, unilogit, wga"
    with pytest.raises(ValueError, match=f"unknown method 'npx'; known: {known}"):
        methods.get("npx")


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        methods.register("ga")(type("Other", (methods.MethodConfig,), {}))


def test_reference_needs_follow_the_config():
    assert methods.make("npo").needs_ref_nll and not methods.make("npo").needs_ref_model
    assert methods.make("undial").needs_ref_model
    assert not methods.make("unilogit").needs_ref_model
    assert methods.make("unilogit", {"target": "initial"}).needs_ref_model
    assert methods.make("ga", {"retain": "kl"}).needs_ref_model
    assert not methods.make("ga", {"retain": "kl", "retain_weight": 0}).needs_ref_model
    assert methods.make("gd").uses_retain and not methods.make("ga").uses_retain
