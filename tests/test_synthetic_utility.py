"""The synthetic benchmark's continuous scores: the general-knowledge multiple choice (accuracy and
the probability of the right option) and the teacher-forced answer probabilities of the QA groups,
each against a direct one-sequence-at-a-time computation on a tiny model built here."""

import dataclasses
import math

import pytest
import torch

import benchmarks
from benchmarks import metrics
from benchmarks.common import EvalConfig
from benchmarks.synthetic import evaluate as ev
from benchmarks.synthetic.templates import UTILITY, UTILITY_MC
from unlearn.data import Collator
from unlearn.models import TinyConfig, load_model

SMALL = dict(seed=3, people=12, forget_fraction=0.2, facts=4, bios=2)
TINY = TinyConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=64)
CONFIG = EvalConfig(batch_size=3, max_new_tokens=4, verbatim_tokens=4, kl_max_tokens=128)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return benchmarks.get("synthetic", **SMALL).materialize(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def tiny(data):
    """A tiny untrained model whose tokenizer knows the benchmark's texts and the questions."""
    texts = data.corpus_texts() + [f"{q} {' '.join(options)}" for q, options, _ in UTILITY_MC]
    model, tokenizer = load_model("tiny", texts=texts, tiny=TINY)
    return model.eval(), tokenizer


# ------------------------------------------------------------------------------------ the question set


def test_the_question_set_is_sound():
    questions = [q for q, _, _ in UTILITY_MC]
    assert len(questions) >= 60 and len(set(questions)) == len(questions)
    assert len({q.lower().rstrip("?") for q in questions}) == len(questions)  # no near-duplicate wording
    for question, options, answer in UTILITY_MC:
        assert question.endswith("?") and question == question.strip(), question
        assert isinstance(options, tuple) and len(options) == 4, question
        assert len(set(options)) == 4 and all(o and o == o.strip() for o in options), question
        assert isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < 4, question
    # the right option is not always in the same place
    assert {answer for _, _, answer in UTILITY_MC} == {0, 1, 2, 3}
    assert max(sum(a == i for _, _, a in UTILITY_MC) for i in range(4)) <= len(UTILITY_MC) / 2


def test_no_question_is_trained_and_the_data_carries_the_set(data):
    assert [(r["question"], tuple(r["choices"]), r["answer"]) for r in data.utility_mc] == list(UTILITY_MC)
    asked = {q for q, _, _ in UTILITY_MC}
    assert not asked & {q for q, _ in UTILITY}  # the free-form utility probes are other questions
    for utility in (False, True):
        for with_forget in (False, True):
            corpus = " ".join(e.get("text", "") + e.get("question", "")
                              for e in data.train_examples(with_forget=with_forget, utility=utility))
            assert not [q for q in asked if q in corpus]


# ---------------------------------------------------------------------------- direct computations


def direct_logprobs(model, tokenizer, question: str, answer: str, chat: bool) -> list[float]:
    """log p(answer token | everything before it), one sequence at a time, from the tokenizer alone."""
    if chat:
        prompt = tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                         add_generation_prompt=True, tokenize=False),
                           add_special_tokens=False)["input_ids"]
        completion = tokenizer(answer, add_special_tokens=False)["input_ids"]
    else:
        prompt = tokenizer(f"Question: {question}\nAnswer:")["input_ids"]
        completion = tokenizer(f" {answer}", add_special_tokens=False)["input_ids"]
    ids = prompt + completion
    with torch.no_grad():
        log_p = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)  # (T, V)
    return [float(log_p[t - 1, ids[t]]) for t in range(len(prompt), len(ids))]


def brute_force(model, tokenizer, item: dict, chat: bool, length_normalised: bool) -> tuple[float, float]:
    scores = []
    for choice in item["choices"]:
        lps = direct_logprobs(model, tokenizer, item["question"], choice, chat)
        scores.append(sum(lps) / len(lps) if length_normalised else sum(lps))
    best = max(range(len(scores)), key=lambda i: scores[i])
    total = sum(math.exp(s) for s in scores)
    return float(best == item["answer"]), math.exp(scores[item["answer"]]) / total


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("length_normalised", [False, True])
def test_multiple_choice_equals_brute_force(data, tiny, chat, length_normalised):
    model, tokenizer = tiny
    items = list(data.utility_mc)[::7]  # a dozen questions, options of every length, batches of 3 across them
    collate = Collator(tokenizer, max_length=128, chat_template=chat)
    batched = ev.mc_outcomes(model, tokenizer, collate, items, chat, CONFIG, length_normalised=length_normalised)
    expected = [brute_force(model, tokenizer, item, chat, length_normalised) for item in items]
    assert [c for c, _ in batched] == [c for c, _ in expected]
    assert [p for _, p in batched] == pytest.approx([p for _, p in expected], abs=1e-5)


@pytest.mark.parametrize("chat", [False, True])
def test_answer_probability_equals_the_direct_per_token_computation(data, tiny, chat):
    model, tokenizer = tiny
    probes = data.probes["forget_qa"] + data.probes["retain_qa"][:5]
    collate = Collator(tokenizer, max_length=128, chat_template=chat)
    values = ev.answer_probs(model, tokenizer, collate, probes, chat, CONFIG)
    for probe, value in zip(probes, values):
        lps = direct_logprobs(model, tokenizer, probe.question, probe.answer, chat)
        assert value == pytest.approx(math.exp(sum(lps) / len(lps)), rel=1e-5)


def test_answer_probability_scores_the_trained_answer_tokens(data, tiny):
    """The scored tokens are the training example's labelled tokens without the final EOS."""
    model, tokenizer = tiny
    collate = Collator(tokenizer, max_length=128)
    probe = data.probes["retain_qa"][0]
    ids, labels = collate.encode({"question": f"Question: {probe.question}\nAnswer:", "answer": f" {probe.answer}"})
    trained = [t for t in labels if t != -100]
    assert trained[-1] == tokenizer.eos_token_id
    (lps,) = ev.completion_logprobs(model, tokenizer, collate, [(probe.question, probe.answer)], False, CONFIG)
    assert len(lps) == len(trained) - 1


# ----------------------------------------------------------------------------------- pure functions


def test_choice_probabilities_and_ties():
    assert sum(metrics.choice_probabilities([-1.0, -2.0, -3.0, -0.5])) == pytest.approx(1.0)
    assert metrics.choice_probabilities([-1000.0, -1000.0]) == pytest.approx([0.5, 0.5])  # no underflow
    assert metrics.multiple_choice([[-1.0], [-1.0]], 1, length_normalised=False) == (0.0, pytest.approx(0.5))
    # sum and mean disagree when the options differ in length
    options = [[-0.5, -0.5, -0.5], [-1.2]]
    assert metrics.multiple_choice(options, 0, length_normalised=False)[0] == 0.0
    assert metrics.multiple_choice(options, 0, length_normalised=True)[0] == 1.0
    assert metrics.multiple_choice(options, 1, length_normalised=False)[1] == pytest.approx(1 / (1 + math.exp(-0.3)))
    assert metrics.answer_probability([math.log(0.5), math.log(0.125)]) == pytest.approx(0.25)
    for bad in (2, -1, True):
        with pytest.raises(ValueError, match="answer must be an index"):
            metrics.multiple_choice(options, bad, length_normalised=True)
    with pytest.raises(ValueError, match="at least 2 choices"):
        metrics.multiple_choice([[-1.0]], 0, length_normalised=True)
    with pytest.raises(ValueError, match="non-empty"):
        metrics.answer_probability([])


# ------------------------------------------------------------------------------ evaluation and declaration


def test_evaluation_parts_and_probe_limits(data, tiny):
    model, tokenizer = tiny
    collate = Collator(tokenizer, max_length=128)
    names = {"utility_mc_accuracy", "utility_mc_prob"} | {f"{g}_answer_prob" for g in ev.ANSWER_PROB_GROUPS}
    full = ev.evaluate(model, tokenizer, collate, data, None, CONFIG, parts=("likelihood", "utility"))
    assert names <= set(full) and all(f"{n}_stderr" in full for n in names)
    assert all(0.0 < full[n] <= 1.0 for n in names if n != "utility_mc_accuracy")
    alone = ev.evaluate(model, tokenizer, collate, data, None, CONFIG, parts=("utility",))
    assert set(k for k in alone if not k.endswith("_probes")) == {
        "utility_mc_accuracy", "utility_mc_prob", "utility_mc_accuracy_stderr", "utility_mc_prob_stderr"}
    assert all(alone[k] == pytest.approx(full[k]) for k in alone)
    likelihood = ev.evaluate(model, tokenizer, collate, data, None, CONFIG, parts=("likelihood",))
    assert {k for k in likelihood if not k.endswith(("_stderr", "_probes"))} == {
        f"{g}_answer_prob" for g in ev.ANSWER_PROB_GROUPS}
    assert not names & set(ev.evaluate(model, tokenizer, collate, data, None, CONFIG, parts=("generation",)))
    cut = ev.evaluate(model, tokenizer, collate, data, None, dataclasses.replace(CONFIG, max_probes=2),
                      parts=("likelihood", "utility"))
    assert cut["utility_mc_prob"] == pytest.approx(full["utility_mc_prob"])  # the whole set, always
    first = ev.answer_probs(model, tokenizer, collate, data.probes["retain_qa"][:2], False, CONFIG)
    assert cut["retain_qa_answer_prob"] == pytest.approx(sum(first) / 2)  # groups are cut to max_probes


def test_declared_directions_roles_and_front():
    benchmark = benchmarks.get("synthetic")
    by_name = {m.name: m for m in benchmark.metrics()}
    expected = {"forget_qa_answer_prob": ("min", "forget"), "forget_qa_paraphrase_answer_prob": ("min", "forget"),
                "retain_qa_answer_prob": ("max", "retain"), "retain_qa_paraphrase_answer_prob": ("max", "retain"),
                "neighbor_qa_answer_prob": ("max", "neighbour"), "utility_mc_accuracy": ("max", "utility"),
                "utility_mc_prob": ("max", "utility")}
    assert {n: (by_name[n].direction, by_name[n].role) for n in expected} == expected
    fronts = [(f.x, f.y) for f in benchmark.declared.fronts]
    assert fronts[:3] == [("forget_qa_rouge_l_recall", "retain_qa_rouge_l_recall"),
                          ("forget_verbmem_rouge_l_f1", "utility_qa_rouge_l_recall"),
                          ("forget_all_rouge_l_recall", "neighbor_qa_rouge_l_recall")]
    assert ("forget_qa_answer_prob", "retain_qa_answer_prob") in fronts
    assert "utility_mc_accuracy" in benchmark.declared.trajectories
