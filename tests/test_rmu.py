"""RMU: the control vector from the trial's seed, the parameters it trains, its loss through the
step against the hidden states computed directly, and a resumed run steering to the same vector."""

import copy

import pytest
import torch
from toy import toy_collate, toy_examples, toy_model

from unlearn import engine as engines
from unlearn import loop, losses, methods
from unlearn import step as steps


def test_control_vector_comes_from_the_seed():
    method = methods.make("rmu", {"steering": 4.0})
    first = method.control(16, seed=3)
    assert torch.equal(first, method.control(16, seed=3)) and not torch.equal(first, method.control(16, seed=4))
    assert float(first.norm()) == pytest.approx(4.0) and bool((first >= 0).all())  # uniform direction, as WMDP's


def test_only_the_selected_mlps_train():
    method = methods.make("rmu")
    assert method.layer_of(32) == 7  # the WMDP authors' layer of a 32-layer model
    model = toy_model(0)
    config = model.config
    config.num_hidden_layers = 1
    trained = methods.trained_parameters(model, method)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names == ["model.layers.0.mlp.down_proj.weight"] and len(trained) == 1
    chosen = methods.make("rmu", {"layer": 9, "train_layers": [3, 4]})
    assert [chosen.trains(f"model.layers.{i}.mlp.down_proj.weight", 32) for i in (2, 3, 4, 9)] == [
        False, True, True, False]
    with pytest.raises(ValueError, match="rmu layer 9 does not exist: the model has 4 layers"):
        chosen.layer_of(4)
    with pytest.raises(ValueError, match="retain must be none, nll or kl"):
        methods.make("npo", {"retain": "hidden"})


def test_loss_equals_the_hidden_states_computed_directly():
    model = toy_model(1)
    frozen = copy.deepcopy(model).eval()
    with torch.no_grad():  # move away from θ0, as after some unlearning steps
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    method = methods.make("rmu", {"retain_weight": 3.0, "steering": 2.0})
    forget = toy_collate(toy_examples(3, seed=2))
    retain = toy_collate(toy_examples(4, seed=3, prompt=1))
    value, parts = steps.loss_terms(model, method, forget, retain, ref_model=frozen, seed=5)
    value = value.detach()

    def after_layer_0(m, batch):
        return m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 output_hidden_states=True).hidden_states[1]

    def trained_positions(batch):  # the positions whose next token is trained
        mask = torch.zeros_like(batch["labels"], dtype=torch.bool)
        mask[:, :-1] = batch["labels"][:, 1:] != -100
        return mask

    h, mask = after_layer_0(model, forget), trained_positions(forget)
    control = method.control(h.shape[-1], 5).double()
    forget_term = ((h - control) ** 2).sum(-1)[mask].sum() / (h.shape[-1] * mask.sum())
    r, r_mask = after_layer_0(model, retain), trained_positions(retain)
    retain_term = ((r - after_layer_0(frozen, retain)) ** 2).sum(-1)[r_mask].sum() / (r.shape[-1] * r_mask.sum())
    assert float(parts["forget_loss"]) == pytest.approx(float(forget_term), rel=1e-10)
    assert float(parts["retain_loss"]) == pytest.approx(float(retain_term), rel=1e-10) and retain_term > 0
    assert float(value) == pytest.approx(float(forget_term + 3.0 * retain_term), rel=1e-10)
    assert float(losses.rmu_forget(h, mask, control)) == pytest.approx(float(forget_term), rel=1e-10)


def run(model, epochs, start_epoch=0, optimizer_state=None):
    method = methods.make("rmu", {"retain": "none"})
    parameters = methods.trained_parameters(model, method)
    optimizer = torch.optim.AdamW(parameters, lr=1e-2)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    loop.run(engines.PlainEngine(model, optimizer), method, toy_examples(6, seed=8), [], toy_collate,
             loop.LoopConfig(epochs=epochs, micro_batch=3, seed=11, start_epoch=start_epoch))
    return optimizer


def test_a_resumed_run_steers_to_the_same_vector():
    whole = toy_model(2)
    run(whole, epochs=2)
    first = toy_model(2)
    optimizer = run(first, epochs=1)
    resumed = copy.deepcopy(first)  # a fresh process from the epoch-1 checkpoint: weights and optimizer state
    run(resumed, epochs=2, start_epoch=1, optimizer_state=copy.deepcopy(optimizer.state_dict()))
    start = dict(toy_model(2).named_parameters())
    for (name, a), b in zip(whole.named_parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-12), name
        assert torch.equal(a, start[name]) == ("down_proj" not in name)  # only the selected MLP moved
