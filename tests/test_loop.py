"""The step and the loop: exact batch-split invariance, NPO references, reporting, schedules."""

import copy
import math

import pytest
import torch
from toy import toy_collate, toy_examples, toy_model

from unlearn import engine as engines
from unlearn import loop, losses, methods, schedule
from unlearn import step as steps

# On the random toy model p_y ≈ 1/V: SimNPO at β = 4.5 (σ(−β log V)) and SatImp at β1 = 5 (p_y^5) barely
# move it, so they run with parameters that make the update large enough to compare.
TOY_PARAMS = {"simnpo": {"beta": 0.5, "delta": 1.0}, "satimp": {"beta1": 0.5}}
CONFIGS = [(name, TOY_PARAMS.get(name, {})) for name in methods.names()] + [
    (name, {"retain": term, "retain_weight": 0.7})
    for name in ("ga", "npo", "undial", "unilogit") for term in ("nll", "kl")
] + [("unilogit", {"target": "initial"}), ("unilogit", {"divergence": "forward"})]
IDS = [name + "".join(f"-{v}" for v in params.values()) for name, params in CONFIGS]


def one_update(name, params, micro, accum, forget, retain, seed=0):
    model = toy_model(seed)
    ref_model = copy.deepcopy(model).eval()
    method = methods.make(name, params)
    engine = engines.PlainEngine(model, torch.optim.SGD(model.parameters(), lr=0.5),
                                 accumulation_steps=accum)
    forget = loop.with_index(forget)
    ref_nll = steps.reference_nlls(ref_model, method, forget, toy_collate) if method.needs_ref_nll else None
    metrics = loop.update(engine, method, forget, retain if method.uses_retain else None, toy_collate,
                          ref_model=ref_model, ref_nll=ref_nll)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), metrics


@pytest.mark.parametrize("name,params", CONFIGS, ids=IDS)
@pytest.mark.parametrize("n", [8, 6])
def test_update_does_not_depend_on_how_the_batch_is_split(name, params, n):
    forget, retain = toy_examples(n, seed=1), toy_examples(8, seed=2, prompt=1)
    start = torch.cat([p.detach().flatten() for p in toy_model(0).parameters()])
    reference, ref_metrics = one_update(name, params, 8, 1, forget, retain)
    assert (reference - start).abs().max() > 1e-4  # the update did something
    for micro, accum in ((4, 2), (2, 4), (1, 8)):
        weights, metrics = one_update(name, params, micro, accum, forget, retain)
        assert torch.allclose(weights, reference, atol=1e-10, rtol=0), (micro, accum)
        for key, value in ref_metrics.items():
            assert math.isclose(metrics[key], value, abs_tol=1e-9), key


def test_precomputed_npo_reference_equals_live_frozen_model():
    model = toy_model(3)
    forget = loop.with_index(toy_examples(6, seed=4))
    ref_nll = steps.reference_sequence_nll(model, forget, toy_collate, batch_size=4)
    with torch.no_grad():  # move the model away from θ0, as after some unlearning steps
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    frozen = toy_model(3).eval()
    batch = toy_collate(forget[1:5])
    method = methods.make("npo", {"beta": 0.3})
    looked_up, _ = steps.loss_terms(model, method, batch, ref_nll=ref_nll)
    live_ref = losses.sequence_nll(steps.logits_of(frozen, batch), batch["labels"]).detach()
    live = losses.npo(steps.logits_of(model, batch), batch["labels"], live_ref, 0.3)
    assert torch.allclose(looked_up, live, atol=1e-12)


def test_loop_computes_npo_reference_from_the_initial_model():
    model = toy_model(5)
    forget = toy_examples(5, seed=6)
    expected = steps.reference_sequence_nll(copy.deepcopy(model).eval(), loop.with_index(forget), toy_collate)
    seen = {}
    original = steps.reference_sequence_nll

    def spy(*args, **kwargs):
        seen["ref"] = original(*args, **kwargs)
        return seen["ref"]

    engine = engines.PlainEngine(model, torch.optim.SGD(model.parameters(), lr=0.1))
    steps.reference_sequence_nll = spy
    try:
        loop.run(engine, methods.make("npo"), forget, [], toy_collate, loop.LoopConfig(micro_batch=2))
    finally:
        steps.reference_sequence_nll = original
    assert torch.allclose(seen["ref"], expected, atol=1e-12)


def test_reports_every_step_and_calls_the_epoch_hook():
    model = toy_model(0)
    config = loop.LoopConfig(epochs=3, micro_batch=2, seed=1)
    engine = engines.PlainEngine(model, torch.optim.SGD(model.parameters(), lr=0.01), accumulation_steps=2)
    reports, epochs = [], []
    state = loop.run(engine, methods.make("gd"), toy_examples(10), toy_examples(3, seed=9), toy_collate, config,
                     report=reports.append, on_epoch_end=lambda e, s: epochs.append((e, s.step, model.training)))
    per_epoch = math.ceil(10 / 4)
    assert [r["step"] for r in reports] == list(range(1, 3 * per_epoch + 1))
    assert [r["epoch"] for r in reports] == [e for e in (1, 2, 3) for _ in range(per_epoch)]
    assert epochs == [(1, 3, False), (2, 6, False), (3, 9, False)]
    assert state.step == 9 and state.epoch == 3 and engine.global_steps == 9
    assert all({"loss", "forget_loss", "retain_loss", "lr"} <= set(r) for r in reports)


def test_max_steps_stops_early():
    model = toy_model(0)
    engine = engines.PlainEngine(model, torch.optim.SGD(model.parameters(), lr=0.01))
    epochs = []
    state = loop.run(engine, methods.make("ga"), toy_examples(10), [], toy_collate,
                     loop.LoopConfig(epochs=5, micro_batch=2, max_steps=7),
                     on_epoch_end=lambda e, s: epochs.append(e))
    assert state.step == 7 and engine.global_steps == 7 and epochs == [1, 2]


def test_retain_batches_cycle_with_the_forget_batches():
    forget = toy_examples(7)
    retain = [dict(e, tag=i) for i, e in enumerate(toy_examples(3, seed=3))]
    stream = loop._cycle(retain, 4, loop.LoopConfig())
    drawn = [next(stream) for _ in range(3)]
    assert all(len(b) == 4 for b in drawn)
    tags = [e["tag"] for b in drawn for e in b]
    for start in range(0, 12, 3):  # each pass over the retain set sees every example once
        assert sorted(tags[start:start + 3]) == [0, 1, 2]
    assert len(loop.shard(forget, type("E", (), {"accumulation_steps": 2, "world_size": 2, "rank": 1})())) == 2


def test_shards_cover_the_effective_batch_once():
    examples = [{"i": i} for i in range(8)]
    seen = []
    for rank in range(2):
        fake = type("E", (), {"accumulation_steps": 2, "world_size": 2, "rank": rank})()
        parts = loop.shard(examples, fake)
        assert len(parts) == 2
        seen += [e["i"] for part in parts for e in part]
    assert sorted(seen) == list(range(8))


def test_non_finite_loss_raises_diverged():
    model = toy_model(0)
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")
    engine = engines.PlainEngine(model, torch.optim.SGD(model.parameters(), lr=0.01))
    with pytest.raises(loop.Diverged, match="non-finite loss"):
        loop.run(engine, methods.make("ga"), toy_examples(4), [], toy_collate, loop.LoopConfig(micro_batch=2))


def test_warmup_and_schedule_drive_the_learning_rate():
    model = toy_model(0)
    config = loop.LoopConfig(epochs=2, micro_batch=2)
    total = loop.total_steps(8, config, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = engines.PlainEngine(model, optimizer, scheduler=schedule.scheduler(optimizer, "linear", total, 2))
    reports = []
    loop.run(engine, methods.make("ga"), toy_examples(8), [], toy_collate, config, report=reports.append)
    factor = schedule.multiplier("linear", total, 2)
    assert total == 8 and len(reports) == 8
    assert [round(r["lr"], 12) for r in reports] == [round(0.1 * factor(s), 12) for s in range(8)]
    assert factor(0) < factor(1) < factor(2) == 1.0 > factor(5) > factor(8) == 0.0


def test_bad_loop_arguments_are_named():
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        loop.LoopConfig(epochs=0)
    with pytest.raises(ValueError, match="schedule must be one of constant, linear, cosine"):
        schedule.multiplier("step", 10)
    model = toy_model(0)
    engine = engines.PlainEngine(model, torch.optim.SGD(model.parameters(), lr=0.01))
    with pytest.raises(ValueError, match="needs ref_model"):
        loop.run(engine, methods.make("undial"), toy_examples(2), [], toy_collate, loop.LoopConfig())
    with pytest.raises(ValueError, match="needs a non-empty retain set"):
        loop.run(engine, methods.make("gd"), toy_examples(2), [], toy_collate, loop.LoopConfig())


def test_resuming_at_an_epoch_boundary_continues_exactly():
    """Two epochs in one run equal one epoch, then a resumed run from that state (same data order,
    same retain batches, same step count)."""
    forget, retain = toy_examples(10, seed=1), toy_examples(7, seed=2)
    method = methods.make("gd")

    def engine_for(model):
        return engines.PlainEngine(model, torch.optim.SGD(model.parameters(), lr=0.1), accumulation_steps=2)

    whole = toy_model(0)
    reports = []
    loop.run(engine_for(whole), method, forget, retain, toy_collate, loop.LoopConfig(epochs=2, micro_batch=2),
             report=reports.append)
    half = toy_model(0)
    loop.run(engine_for(half), method, forget, retain, toy_collate, loop.LoopConfig(epochs=1, micro_batch=2))
    resumed = []
    state = loop.run(engine_for(half), method, forget, retain, toy_collate,
                     loop.LoopConfig(epochs=2, micro_batch=2, start_epoch=1), report=resumed.append)
    for a, b in zip(whole.parameters(), half.parameters()):
        assert torch.allclose(a, b, atol=1e-12)
    assert [r["step"] for r in resumed] == [r["step"] for r in reports[len(reports) - len(resumed):]]
    assert state.epoch == 2


def test_grouping_by_length_keeps_every_example_once_per_epoch_and_the_step_count(monkeypatch):
    class Collate:  # a collator that can say how long an example is
        def __call__(self, examples):
            return toy_collate(examples)

        def encode(self, example):
            return example["ids"], None

    forget = [dict(e, index=i) for i, e in enumerate(toy_examples(10))]
    retain = toy_examples(5, seed=3)
    seen = []

    def update(engine, method, forget, retain, collate, **_):
        seen.append(([e["index"] for e in forget], [len(e["ids"]) for e in forget], [len(e["ids"]) for e in retain]))
        return {"loss": 0.0}

    monkeypatch.setattr(loop, "update", update)
    engine = type("E", (), {"accumulation_steps": 1, "world_size": 1, "rank": 0, "lr": lambda self: 0.0,
                            "train": lambda self, mode=True: None})()
    config = loop.LoopConfig(epochs=2, micro_batch=4, group_by_length=True)
    state = loop.run(engine, methods.make("gd"), forget, retain, Collate(), config)
    assert state.step == 2 * math.ceil(10 / 4) == len(seen)
    for epoch in (seen[:3], seen[3:]):
        assert sorted(i for indices, _, _ in epoch for i in indices) == list(range(10))
    # batches cut in order of length: their length ranges do not interleave
    spans = sorted((min(lengths), max(lengths)) for _, lengths, _ in seen[:3])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert all(len(r) == 4 for _, _, r in seen)


@pytest.mark.parametrize("name,params", [("ga", {"retain": "nll"}), ("undial", {"retain": "kl"}), ("npo", {})])
def test_gradient_checkpointing_gives_the_same_step(name, params):
    """One step of the loop with every layer checkpointed: the same losses and gradients (float64),
    the layers run again in backward, and the frozen reference is left as it was."""
    from unlearn import models

    method = methods.make(name, params)
    forget, retain = toy_examples(6, seed=1), toy_examples(6, seed=2, prompt=1)

    def one_step(checkpointed):
        model = toy_model(0)
        ref_model = copy.deepcopy(model).eval()
        if checkpointed:
            models.checkpoint_activations(model)
        calls = []
        model.model.layers[0].input_layernorm.register_forward_hook(lambda *_: calls.append(1))  # the layer's first op
        grads = []
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        optimizer.register_step_pre_hook(lambda *_: grads.append([p.grad.clone() for p in model.parameters()]))
        engine = engines.PlainEngine(model, optimizer, accumulation_steps=2)
        state = loop.run(engine, method, forget, retain, toy_collate, loop.LoopConfig(micro_batch=3, max_steps=1),
                         ref_model=ref_model)
        return state.metrics, grads[0], len(calls), ref_model

    plain, plain_grads, plain_calls, _ = one_step(False)
    metrics, grads, calls, ref_model = one_step(True)
    assert len(grads) == len(plain_grads) and plain_calls > 0
    for a, b in zip(grads, plain_grads):
        assert torch.allclose(a, b, atol=1e-10, rtol=0)
    for key in ("loss", "forget_loss", "retain_loss"):
        if key in plain:
            assert math.isclose(metrics[key], plain[key], abs_tol=1e-10), key
    passes = 2 * (1 + method.uses_retain)  # micro-batches of one update, each through the model once
    npo_reference = 2 if method.needs_ref_nll else 0  # NPO's reference NLLs, computed by the model itself
    assert plain_calls == passes + npo_reference and calls == 2 * passes + npo_reference  # recomputed in backward
    assert not any(getattr(m, "gradient_checkpointing", False) for m in ref_model.modules())
