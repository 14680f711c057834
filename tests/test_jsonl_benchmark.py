"""The bring-your-own JSONL benchmark: loading, schema errors, scores against independent
computations (the `rouge` 1.0.1 package, a hand-written MC scorer), and an end-to-end evaluation."""

import dataclasses
import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from rouge import Rouge

import benchmarks
from benchmarks import inference
from benchmarks.common import EvalConfig, without_probes
from benchmarks.jsonl import JsonlData, read
from unlearn.data import Collator
from unlearn.models import TinyConfig, load_model

FIXTURE = Path(__file__).parent / "fixtures" / "byo"


@pytest.fixture
def source(tmp_path):
    """A writable copy of the fixture directory."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "byo"))


def test_fixture_materializes_and_reads_back(tmp_path):
    benchmark = benchmarks.get("jsonl", path=str(FIXTURE))
    data = benchmark.materialize(tmp_path / "cache")
    assert data.root == tmp_path / "cache" / f"jsonl-{benchmark.key()}"
    assert (data.root / "COMPLETE").is_file()
    assert {p.name for p in data.root.glob("*.jsonl")} == {p.name for p in FIXTURE.glob("*.jsonl")}
    assert all((data.root / p.name).read_bytes() == p.read_bytes() for p in FIXTURE.glob("*.jsonl"))
    assert [len(x) for x in (data.forget, data.retain, data.forget_completion, data.neighbor_completion,
                             data.qa, data.utility_mc, data.holdout)] == [6, 8, 4, 4, 2, 3, 4]
    assert data.forget_examples()[0] == {"text": data.forget[0]} and len(data.retain_examples()) == 8
    assert all("Larkspur Hollow" in t for t in data.forget) and not any("Larkspur" in t for t in data.retain)
    assert benchmark.read(data.root) == data and data.chat is False
    assert benchmark.materialize(tmp_path / "cache").root == data.root  # cached


def test_key_follows_contents_and_chat(source):
    benchmark = benchmarks.get("jsonl", path=str(source))
    key = benchmark.key()
    assert benchmarks.get("jsonl", path=str(FIXTURE)).key() == key  # same bytes, other place
    assert benchmarks.get("jsonl", path=str(source), chat=True).key() != key  # chat changes the training text
    # max_new_tokens only changes evaluation: the data and a prepared target / oracle stay valid
    assert benchmarks.get("jsonl", path=str(source), max_new_tokens=16).key() == key
    with open(source / "retain.jsonl", "a") as f:
        f.write('{"text": "One more listing."}\n')
    assert benchmark.key() != key


def test_optional_files_may_be_absent(source, tmp_path):
    for name in ("qa.jsonl", "utility_mc.jsonl", "holdout.jsonl"):
        (source / name).unlink()
    data = benchmarks.get("jsonl", path=str(source), chat=True).materialize(tmp_path / "cache")
    assert data.qa == data.utility_mc == data.holdout == [] and data.chat is True


SCHEMA_ERRORS = [
    # (file, new content or None to delete, what the message must name)
    ("forget.jsonl", None, ["forget.jsonl", "required file not found", "text (string)"]),
    ("neighbor_completion.jsonl", None, ["neighbor_completion.jsonl", "prompt (string), completion (string)"]),
    ("retain.jsonl", "", ["retain.jsonl", "no rows", "text (string)"]),
    ("retain.jsonl", '{"text": "fine"}\n{"body": "x"}\n', ["retain.jsonl", "row 2", "'text'", "text (string)"]),
    ("forget_completion.jsonl", '{"prompt": "a", "completion": 3}\n',
     ["forget_completion.jsonl", "row 1", "'completion'", "is int, expected string"]),
    ("forget.jsonl", '{"text": "  "}\n', ["forget.jsonl", "row 1", "'text'", "blank"]),
    ("qa.jsonl", '{"question": "q", "answer": "a", "split": "test"}\n',
     ["qa.jsonl", "row 1", "'split'", "'forget' or 'retain'", "question (string), answer (string), split (string)"]),
    ("qa.jsonl", '{"question": "q", "answer": "a"}\n', ["qa.jsonl", "row 1", "'split'"]),
    ("utility_mc.jsonl", '{"question": "q", "choices": "a b", "answer": 0}\n',
     ["utility_mc.jsonl", "row 1", "'choices'", "expected list", "choices (list), answer (integer)"]),
    ("utility_mc.jsonl", '{"question": "q", "choices": ["a", "b"], "answer": 2}\n',
     ["utility_mc.jsonl", "row 1", "'answer'", "0..1"]),
    ("utility_mc.jsonl", '{"question": "q", "choices": ["a", "b"], "answer": true}\n',
     ["utility_mc.jsonl", "row 1", "'answer'", "is bool, expected integer"]),
    ("holdout.jsonl", '{"text": "ok"}\nnot json\n', ["holdout.jsonl:2", "not valid JSON"]),
]


@pytest.mark.parametrize("name, content, needles", SCHEMA_ERRORS)
def test_schema_errors_are_one_line_and_name_file_and_field(source, tmp_path, name, content, needles):
    if content is None:
        (source / name).unlink()
    else:
        (source / name).write_text(content)
    with pytest.raises(ValueError) as error:
        benchmarks.get("jsonl", path=str(source)).materialize(tmp_path / "cache")
    message = str(error.value)
    assert "\n" not in message and str(source) in message
    for needle in needles:
        assert needle in message, message
    assert not list((tmp_path / "cache").glob("jsonl-*"))  # nothing cached


@pytest.mark.parametrize("params, needle", [
    ({}, "'path'"),
    ({"path": ""}, "'path'"),
    ({"path": str(FIXTURE), "undial_gammas": [3.0]}, "unknown jsonl parameter 'undial_gammas'"),  # gone
    ({"path": str(FIXTURE), "max_new_tokens": 0}, "'max_new_tokens'"),
    ({"path": str(FIXTURE), "chat": "yes"}, "'chat'"),
    ({"path": str(FIXTURE), "prompt": "chat"}, "'prompt'"),
])
def test_bad_params_are_one_line_errors_naming_the_parameter(params, needle):
    with pytest.raises(ValueError) as error:
        benchmarks.get("jsonl", **params)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_missing_directory_is_reported_on_use(tmp_path):
    benchmark = benchmarks.get("jsonl", path=str(tmp_path / "nowhere"))  # workers build it without the source
    with pytest.raises(ValueError, match="parameter 'path'.*not a directory"):
        benchmark.materialize(tmp_path / "cache")


class PromptsAsText:
    """A collator stand-in whose prompts stay strings, so a fake generate can look them up."""

    def prompt_ids(self, question):
        return question


def test_generation_scores_equal_the_rouge_package_on_known_outputs(monkeypatch):
    data = read(FIXTURE)
    outputs = {}  # prompt -> (output, reference): first line partly right, second line the whole answer
    completions = [(r["prompt"], r["completion"]) for r in data.forget_completion + data.neighbor_completion]
    for prompt, reference in completions + [(f"Question: {r['question']}\nAnswer:", r["answer"]) for r in data.qa]:
        words = reference.split()
        outputs[prompt] = (" ".join(words[::2]) + " and Something Else.\n" + reference, reference)

    def fake_generate(model, tokenizer, prompts, *, stop, **options):
        assert "\n" in stop
        return [outputs[p][0] for p in prompts]

    monkeypatch.setattr(inference, "generate", fake_generate)
    benchmark = benchmarks.get("jsonl", path=str(FIXTURE))
    got = benchmark.evaluate(None, None, PromptsAsText(), data, None, EvalConfig(), ("generation",))
    rouge = Rouge()

    def expected(prompts):
        recalls = [rouge.get_scores(outputs[p][0].split("\n")[0], outputs[p][1])[0]["rouge-l"]["r"] for p in prompts]
        return np.mean(recalls), np.std(recalls, ddof=1) / math.sqrt(len(recalls)) if len(recalls) > 1 else 0.0

    groups = {
        "forget_completion_rouge_l_recall": [r["prompt"] for r in data.forget_completion],
        "neighbor_completion_rouge_l_recall": [r["prompt"] for r in data.neighbor_completion],
        "forget_qa_rouge_l_recall": [f"Question: {r['question']}\nAnswer:" for r in data.qa if r["split"] == "forget"],
        "retain_qa_rouge_l_recall": [f"Question: {r['question']}\nAnswer:" for r in data.qa if r["split"] == "retain"],
    }
    assert set(without_probes(got)) == {n for g in groups for n in (g, f"{g}_stderr")}
    for name, prompts in groups.items():
        mean, stderr = expected(prompts)
        assert 0 < got[name] < 1
        assert got[name] == pytest.approx(mean, abs=1e-12) and got[f"{name}_stderr"] == pytest.approx(stderr, abs=1e-12)


def test_mc_accuracy_equals_an_independent_count(monkeypatch):
    data = read(FIXTURE)
    table = {"Berlin": -1.0, "Paris": -2.0, "Madrid": -3.0, "Rome": -4.0,  # item 0 picks 0 (wrong)
             "six": -5.0, "eight": -1.5, "ten": -9.0, "four": -2.5,  # item 1 picks 1 (right)
             "10": -2.0, "11": -3.0, "12": -1.0, "13": -1.0}  # item 2: a tie, the first (2) wins (right)

    def fake_logprobs(model, tokenizer, prompts, completions, **options):
        assert all(c.startswith(" ") for c in completions)
        return [inference.CompletionScore(table[c.strip()], torch.tensor([table[c.strip()]])) for c in completions]

    monkeypatch.setattr(inference, "completion_logprobs", fake_logprobs)
    got = benchmarks.get("jsonl", path=str(FIXTURE)).evaluate(None, None, PromptsAsText(), data, None, EvalConfig(),
                                                              ("utility",))
    right = [int(np.argmax([table[c] for c in item["choices"]])) == item["answer"] for item in data.utility_mc]
    assert right == [False, True, True]
    assert got["utility_mc_accuracy"] == pytest.approx(2 / 3)
    assert got["utility_mc_accuracy_stderr"] == pytest.approx(np.std(right, ddof=1) / math.sqrt(3))


def _choice_logprob(model, prompt_ids, completion_ids) -> float:
    """log p(completion | prompt) by one plain forward pass (no batching, no padding)."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        log_p = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (T, V)
    start = len(prompt_ids)
    return float(sum(log_p[start + i - 1, t] for i, t in enumerate(completion_ids)))


def test_end_to_end_on_a_tiny_model_with_itself_as_oracle(tmp_path):
    benchmark = benchmarks.get("jsonl", path=str(FIXTURE), max_new_tokens=8)
    data: JsonlData = benchmark.materialize(tmp_path / "cache")
    model, tokenizer = load_model("tiny", texts=data.forget + data.retain + data.holdout, tiny=TinyConfig(seed=0))
    model.eval()
    collate = Collator(tokenizer, max_length=128)
    config = EvalConfig(batch_size=4, kl_max_tokens=64)

    refs = benchmark.references(model, model, tokenizer, collate, data, config)
    refs = pickle.loads(pickle.dumps(refs))
    assert refs.oracle_forget.shape[0] == refs.facts.shape[0] >= 64
    # NPO's reference NLLs are stored by the sweep beside the references, not in them
    assert {f.name for f in dataclasses.fields(refs)} == {"baseline", "oracle_forget", "facts"}
    names = {m.name for m in benchmark.metrics()}
    values = refs.baseline
    assert set(without_probes(values)) == {x for n in names for x in (n, f"{n}_stderr")}
    assert all(math.isfinite(v) for v in without_probes(values).values()), values
    for name in ("kl_oracle_model_forget", "kl_model_oracle_forget"):
        assert abs(values[name]) < 1e-5
    assert 0 <= values["mia_min_k_auc"] <= 1

    again = benchmark.evaluate(model, tokenizer, collate, data, refs, config, ("generation", "utility", "mia", "kl"))
    assert without_probes(again) == pytest.approx(without_probes(values)) and again.keys() == values.keys()
    assert benchmark.evaluate(model, tokenizer, collate, data, None, config, ("kl", "verbmem")) == {}

    right = []
    for item in data.utility_mc:
        prompt = collate.prompt_ids(f"Question: {item['question']}\nAnswer:")
        scores = [_choice_logprob(model, prompt, tokenizer(f" {c}", add_special_tokens=False)["input_ids"])
                  for c in item["choices"]]
        right.append(float(int(np.argmax(scores)) == item["answer"]))
    assert values["utility_mc_accuracy"] == pytest.approx(np.mean(right))

    no_oracle = benchmark.references(model, None, tokenizer, collate, data, EvalConfig(parts=("kl", "mia")))
    assert no_oracle.oracle_forget is None
    assert set(no_oracle.baseline) == {"mia_min_k_auc", "mia_min_k_auc_stderr"}


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURE / name).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("chat", [False, True])
def test_preparation_corpus_and_probes(chat):
    data = read(FIXTURE, chat=chat)
    forget, retain = [r["text"] for r in rows("forget.jsonl")], [r["text"] for r in rows("retain.jsonl")]
    qa, mc = rows("qa.jsonl"), rows("utility_mc.jsonl")
    wrap = (lambda q: q) if chat else (lambda q: f"Question: {q}\nAnswer:")
    answer = (lambda a: a) if chat else (lambda a: f" {a}")
    pair = lambda q, a: {"question": wrap(q), "answer": answer(a)}  # noqa: E731
    forget_qa = [pair(r["question"], r["answer"]) for r in qa if r["split"] == "forget"]
    retain_qa = [pair(r["question"], r["answer"]) for r in qa if r["split"] == "retain"]
    mc_pairs = [pair(r["question"], r["choices"][r["answer"]]) for r in mc]
    assert len(forget_qa) == len(retain_qa) == 1 and mc_pairs[0] == pair("What is the capital of France?", "Paris")

    target = data.train_examples(with_forget=True, utility=False)
    oracle = data.train_examples(with_forget=False, utility=False)
    assert target == [{"text": t} for t in forget + retain] + forget_qa + retain_qa
    assert oracle == [{"text": t} for t in retain] + retain_qa
    assert not any("Larkspur" in str(e) for e in oracle)  # the oracle never sees the forget seller
    assert data.train_examples(with_forget=True, utility=True) == target + mc_pairs
    assert data.train_examples(with_forget=False, utility=True) == oracle + mc_pairs

    completion = lambda r: {"prompt": r["prompt"], "answer": r["completion"], "qa": False}  # noqa: E731
    forget_probes = [completion(r) for r in rows("forget_completion.jsonl")]
    neighbours = [completion(r) for r in rows("neighbor_completion.jsonl")]
    question = lambda r: {"prompt": r["question"], "answer": r["answer"], "qa": True}  # noqa: E731
    assert data.forget_probes() == forget_probes
    assert data.check_probes(with_forget=True) == (forget_probes + neighbours
                                                   + [question(r) for r in qa if r["split"] == "forget"]
                                                   + [question(r) for r in qa if r["split"] == "retain"])
    assert data.check_probes(with_forget=False) == neighbours + [question(r) for r in qa if r["split"] == "retain"]

    corpus = " ".join(data.corpus_texts())
    for text in forget + retain + [r["text"] for r in rows("holdout.jsonl")]:
        assert text in corpus
    for r in rows("forget_completion.jsonl") + rows("neighbor_completion.jsonl"):
        assert r["prompt"] + r["completion"] in corpus
    for r in qa:
        assert r["question"] in corpus and r["answer"] in corpus
    for r in mc:
        assert r["question"] in corpus and all(c in corpus for c in r["choices"])


def test_recall_scores_probes_as_evaluation_does(monkeypatch):
    data = read(FIXTURE)
    probes = data.check_probes(with_forget=True)
    seen = {}

    def fake_generate(model, tokenizer, prompts, *, max_new_tokens, stop, **options):
        seen.update(max_new_tokens=max_new_tokens, stop=stop, prompts=list(prompts))
        return [p["answer"] if p["qa"] else "nothing like it" for p in probes]

    monkeypatch.setattr(inference, "generate", fake_generate)
    benchmark = benchmarks.get("jsonl", path=str(FIXTURE), max_new_tokens=5)
    got = benchmark.recall(None, None, PromptsAsText(), data, probes, EvalConfig(max_new_tokens=7))
    # the evaluation config's length, not the benchmark's (a preparation is shared across max_new_tokens)
    assert seen["max_new_tokens"] == 7 and "\n" in seen["stop"]
    # completions are raw prompts, questions wrapped as in training
    assert seen["prompts"] == [f"Question: {p['prompt']}\nAnswer:" if p["qa"] else p["prompt"] for p in probes]
    assert got == [1.0 if p["qa"] else 0.0 for p in probes] and 0 < sum(got) < len(got)


def test_metrics_and_declaration():
    benchmark = benchmarks.get("jsonl", path=str(FIXTURE))
    metrics = benchmark.metrics()
    assert benchmark.metrics(EvalConfig(softlabel_gammas=(3.0,))) == metrics  # no soft-label analysis here
    by_name = {m.name: m for m in metrics}
    assert len(by_name) == len(metrics) and all(m.scale == 1 for m in metrics)  # every value in [0, 1]
    assert {n: (m.direction, m.role) for n, m in by_name.items() if not n.startswith("kl_")} == {
        "forget_completion_rouge_l_recall": ("min", "forget"),
        "neighbor_completion_rouge_l_recall": ("max", "neighbour"),
        "forget_qa_rouge_l_recall": ("min", "forget"), "retain_qa_rouge_l_recall": ("max", "retain"),
        "utility_mc_accuracy": ("max", "utility"), "mia_min_k_auc": (0.5, "privacy")}
    assert {n for n in by_name if n.startswith("kl_")} == {
        f"kl_{a}_{b}_{t}" for a, b in (("oracle", "model"), ("model", "oracle")) for t in ("forget", "forget_facts")}
    assert all(by_name[n].role == "kl" and by_name[n].direction == "min" for n in by_name if n.startswith("kl_"))
    declared = benchmark.declared
    assert (declared.needs_oracle, declared.can_prepare, declared.average_over) == (False, True, ())
    named = {m for f in declared.fronts for m in (f.x, f.y, f.size) if m} | set(declared.trajectories)
    named |= {declared.selection.forget, declared.selection.retain, *declared.selection.floors}
    assert named <= set(by_name)
    assert by_name[declared.selection.forget].direction == "min"
    assert all(by_name[m].direction == "max" for m in (declared.selection.retain, *declared.selection.floors))
