"""The "I don't know" methods: the refusal set, the views a forget batch becomes, their losses
against direct computations, and the one-line refusal of a benchmark without question-answer
forget examples."""

import copy

import pytest
import torch
import yaml
from toy import toy_collate, toy_examples, toy_model

from sweeps import spec as specs
from unlearn import loop, losses, methods, refusals
from unlearn import step as steps


def test_refusals_are_many_distinct_and_fixed_by_index():
    assert len(set(refusals.REFUSALS)) == len(refusals.REFUSALS) >= 50
    assert refusals.refusal(3) == refusals.refusal(3 + len(refusals.REFUSALS)) != refusals.refusal(4)
    examples = [{"question": "Where?", "answer": "Oslo", "index": 7}, {"text": "a bio", "index": 8}]
    assert refusals.qa_only(examples) == examples[:1]
    assert refusals.with_refusals(examples[:1]) == [{"question": "Where?", "answer": refusals.refusal(7), "index": 7}]


def test_only_question_answer_examples_are_trained_on():
    method = methods.make("idknll")
    mixed = [{"text": "a bio", "index": 0}, {"question": "q", "answer": "a", "index": 1}]
    assert method.select_forget(mixed) == mixed[1:]
    assert methods.make("ga").select_forget(mixed) == mixed
    with pytest.raises(ValueError, match="idkdpo needs question-answer forget examples; this forget set has none"):
        methods.make("idkdpo").select_forget(mixed[:1])


def test_idknll_is_the_nll_of_the_refusals():
    model = toy_model(1)
    forget = loop.with_index(toy_examples(4, seed=5))
    method = methods.make("idknll")
    views = method.forget_views(forget)
    assert list(views) == ["forget"] and all(isinstance(e["answer"], str) for e in views["forget"])
    batch = toy_collate(views["forget"])
    value, _ = steps.loss_terms(model, method, batch)
    expected = losses.nll(steps.logits_of(model, batch), batch["labels"])
    assert float(value) == pytest.approx(float(expected), abs=1e-12)
    assert not torch.equal(batch["labels"], toy_collate(forget)["labels"])  # refusals, not the forget answers


def test_idkdpo_prefers_the_refusal_with_precomputed_references():
    model = toy_model(2)
    frozen = copy.deepcopy(model).eval()
    forget = loop.with_index(toy_examples(5, seed=6))
    method = methods.make("idkdpo", {"beta": 0.5})
    refs = steps.reference_nlls(model, method, forget, toy_collate)
    assert set(refs) == {"forget", "preferred"}
    with torch.no_grad():  # move away from θ0, as after some unlearning steps
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    views = method.forget_views(forget[1:4])
    lost, won = toy_collate(views["forget"]), toy_collate(views["preferred"])
    value, _ = steps.loss_terms(model, method, lost, preferred=won, ref_nll=refs)

    def nll(m, b):
        return losses.sequence_nll(steps.logits_of(m, b), b["labels"])

    margin = (nll(frozen, won) - nll(model, won)) - (nll(frozen, lost) - nll(model, lost))  # (B,)
    expected = (-(2 / 0.5) * torch.nn.functional.logsigmoid(0.5 * margin)).mean()
    assert float(value) == pytest.approx(float(expected), abs=1e-9)
    with pytest.raises(ValueError, match="needs the reference NLLs of its 'preferred' examples"):
        steps.loss_terms(model, method, lost, preferred=won, ref_nll=refs["forget"])


def test_a_run_trains_idkdpo_without_a_second_model():
    model = toy_model(4)
    from unlearn import engine as engines

    engine = engines.PlainEngine(model, torch.optim.SGD(model.parameters(), lr=0.5))
    before = [p.detach().clone() for p in model.parameters()]
    state = loop.run(engine, methods.make("idkdpo"), toy_examples(6, seed=7), [], toy_collate,
                     loop.LoopConfig(epochs=1, micro_batch=3))
    assert state.step == 2 and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("method", ["idknll", "idkdpo"])
def test_a_benchmark_without_question_answer_forget_examples_is_refused(tmp_path, method):
    spec = {"name": "idk", "model": {"target": "/models/target"},
            "benchmark": {"name": "rwku", "params": {"targets": 1}}, "methods": {method: {"lr": 1.0e-5}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(specs.SpecError) as error:
        specs.load(path)
    assert str(error.value) == (f"methods.{method} must be left out: it trains on question-answer forget examples, "
                                f"and the rwku benchmark's forget set holds texts only; got '{method}'")
