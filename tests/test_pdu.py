"""PDU: the logit-margin loss against a direct computation, the dual variable's ascent step by step
(and held during warm-up), and a resumed run that continues with the saved dual variable."""

import copy

import pytest
import torch
from toy import toy_collate, toy_examples, toy_model

from helpers import loss_inputs
from unlearn import engine as engines
from unlearn import loop, losses, methods


def test_logit_margin_equals_the_formula_and_vanishes_on_flat_logits():
    logits, labels = loss_inputs.make(t=6, scale=2.0)
    logits.requires_grad_(True)
    value = losses.logit_margin(logits, labels)
    z, valid = logits[:, :-1], labels[:, 1:] != -100
    expected = ((z.max(-1).values - z.mean(-1)) ** 2)[valid].mean()
    assert float(value) == pytest.approx(float(expected), rel=1e-12)
    (grad,), (grad_expected,) = torch.autograd.grad(value, logits), torch.autograd.grad(expected, logits)
    assert torch.allclose(grad, grad_expected)
    flat = torch.full((2, 4, 5), 3.0, dtype=torch.float64)
    assert float(losses.logit_margin(flat, torch.ones(2, 4, dtype=torch.long))) == 0.0
    half = losses.logit_margin(logits.detach()[:2], labels[:2], num_tokens=int(valid.sum()))
    rest = losses.logit_margin(logits.detach()[2:], labels[2:], num_tokens=int(valid.sum()))
    assert float(half + rest) == pytest.approx(float(expected), rel=1e-12)  # the divisor keyword
    assert losses.logit_margin(logits.detach().to(torch.bfloat16), labels).dtype == torch.float32


def run(model, params, epochs, start_epoch=0, method_state=None, optimizer_state=None):
    method = methods.make("pdu", params)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    logged = []
    state = loop.run(engines.PlainEngine(model, optimizer), method, toy_examples(6, seed=3),
                     toy_examples(6, seed=4, prompt=1), toy_collate,
                     loop.LoopConfig(epochs=epochs, micro_batch=3, seed=2, start_epoch=start_epoch,
                                     method_state=method_state), report=logged.append)
    return state, logged, optimizer


def test_the_dual_variable_ascends_on_the_constraint_violation():
    params = {"retain_weight": 2.0, "epsilon": 3.0, "dual_step": 0.5}
    _, logged, _ = run(toy_model(0), params, epochs=2)
    dual = 2.0
    for row in logged:  # each step weighs the retain loss by the λ before it, then updates λ
        assert row["loss"] == pytest.approx(row["forget_loss"] + dual * row["retain_loss"], rel=1e-9)
        dual = max(0.0, dual + 0.5 * (row["retain_loss"] - 3.0))
        assert row["dual"] == pytest.approx(dual, rel=1e-12)
    assert len(logged) == 4 and logged[-1]["dual"] != 2.0
    _, held, _ = run(toy_model(0), dict(params, warmup_epochs=1), epochs=2)
    assert [row["dual"] for row in held[:2]] == [2.0, 2.0] and held[-1]["dual"] != 2.0  # no update in warm-up


def test_a_resumed_run_continues_with_the_saved_dual_variable():
    params = {"retain_weight": 1.0, "epsilon": 3.5, "dual_step": 2.0}
    whole = toy_model(1)
    state, _, _ = run(whole, params, epochs=2)
    first = toy_model(1)
    half, _, optimizer = run(first, params, epochs=1)
    resumed = copy.deepcopy(first)  # from the epoch-1 checkpoint: weights, optimizer and the method's state
    again, _, _ = run(resumed, params, epochs=2, start_epoch=1, method_state=dict(half.method_state),
                      optimizer_state=copy.deepcopy(optimizer.state_dict()))
    assert again.method_state == pytest.approx(state.method_state) and half.method_state != state.method_state
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-12)
