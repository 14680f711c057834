"""The TOFU benchmark (`docs/benchmarks/tofu.md`): the fixture in the hub's schema and through the hub's
code path, open-unlearning's prompt, the evaluator end to end on tiny models against an independent
computation (direct forward passes, scipy, rouge_score), schema and parameter errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from rouge_score import rouge_scorer

import benchmarks
from benchmarks import inference, layouts, tofu
from benchmarks.common import EvalConfig, prompt_text, without_probes
from helpers import hub
from unlearn.data import Collator
from unlearn.models import TinyConfig, load_model

FIXTURE = Path(__file__).parent / "fixtures" / "tofu"
HUB = "locuslab/TOFU"
SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
CONFIG = EvalConfig(batch_size=4)
# The hub's configs and fields (locuslab/TOFU, as open-unlearning's configs/data/datasets/TOFU_*.yaml read them).
HUB_FIELDS = {
    "qa": {"question", "answer"},
    "perturbed": {"question", "answer", "paraphrased_answer", "perturbed_answer", "paraphrased_question"},
    "options": {"question", "option1", "option2", "option3", "option4", "answer"},
    "choices": {"question", "answer", "perturbed_answer"},
}


def fixture_rows(config: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURE / config / "train.jsonl").read_text().splitlines()]


def fake_hub(monkeypatch, root: Path = FIXTURE) -> list:
    return hub.fake_hub(monkeypatch, root, "tofu")


no_hub = hub.no_hub


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.jsonl")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# data


def test_fixture_has_the_hub_configs_and_fields():
    kinds = {**{c: "qa" for c in ("full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90",
                                  "holdout01", "holdout05", "holdout10")},
             **{c: "perturbed" for c in ("forget01_perturbed", "forget05_perturbed", "forget10_perturbed",
                                         "retain_perturbed")},
             "real_authors": "options", "world_facts": "options",
             "real_authors_perturbed": "choices", "world_facts_perturbed": "choices"}
    assert sorted(p.name for p in FIXTURE.iterdir()) == sorted(kinds) == sorted(layouts.TOFU)
    for config, kind in kinds.items():
        rows = fixture_rows(config)
        assert rows and all(set(r) == HUB_FIELDS[kind] for r in rows), config
    full = fixture_rows("full")
    for n in ("01", "05", "10"):  # forget ∪ retain = full, in the hub's order; perturbed = forget with extras
        forget, retain = fixture_rows(f"forget{n}"), fixture_rows(f"retain{100 - int(n)}")
        assert retain + forget == full
        perturbed = fixture_rows(f"forget{n}_perturbed")
        assert [{"question": r["question"], "answer": r["answer"]} for r in perturbed] == forget
        assert len(fixture_rows(f"holdout{n}")) == len(forget)
        assert not {r["question"] for r in fixture_rows(f"holdout{n}")} & {r["question"] for r in full}
    assert all(r in fixture_rows("retain90") for r in (
        {"question": r["question"], "answer": r["answer"]} for r in fixture_rows("retain_perturbed")))
    for config in ("real_authors", "world_facts"):
        for row, pert in zip(fixture_rows(config), fixture_rows(f"{config}_perturbed")):
            options = [row[f"option{i}"] for i in range(1, 5)]
            assert row["answer"] in options and sorted(options) == sorted([pert["answer"], *pert["perturbed_answer"]])


def test_the_hub_code_path_gives_what_the_local_directory_gives(tmp_path, monkeypatch):
    calls = fake_hub(monkeypatch)
    hub = benchmarks.get("tofu", split="forget05").materialize(tmp_path)
    assert sorted(calls) == sorted((HUB, c, "train") for c in tofu.configs("forget05").values())
    monkeypatch.setattr(layouts, "hub_rows", no_hub)
    local = benchmarks.get("tofu", split="forget05", source=str(FIXTURE)).materialize(tmp_path)
    assert hub.root != local.root
    assert dataclasses.replace(hub, root=local.root) == local
    assert tree_hash(hub.root) == tree_hash(local.root)
    assert local.rows["forget"] == fixture_rows("forget05") and local.rows["retain"] == fixture_rows("retain95")
    assert local.rows["holdout"] == fixture_rows("holdout05") and local.chat is True


def test_materialize_is_cached_and_keyed_by_source_split_and_chat(tmp_path, monkeypatch):
    benchmark = benchmarks.get("tofu", source=str(FIXTURE), split="forget01")
    first = benchmark.materialize(tmp_path)
    stamp = (first.root / "COMPLETE").stat().st_mtime_ns
    monkeypatch.setattr(layouts, "hub_rows", no_hub)
    assert benchmark.materialize(tmp_path) == first and (first.root / "COMPLETE").stat().st_mtime_ns == stamp
    assert benchmark.read(first.root) == first
    assert sorted(p.name for p in first.root.iterdir()) == sorted(["COMPLETE", *tofu.configs("forget01").values()])
    keys = {benchmarks.get("tofu", source=str(FIXTURE), **p).key()
            for p in ({}, {"split": "forget05"}, {"split": "forget01", "chat": False})}
    assert benchmark.key() not in keys and len(keys) == 3
    assert benchmarks.get("tofu", source=str(FIXTURE), split="forget01", max_new_tokens=9).key() == benchmark.key()
    edited = tmp_path / "edited"
    shutil.copytree(FIXTURE, edited)
    (edited / "forget01" / "train.jsonl").write_text('{"question": "Q?", "answer": "A."}\n')
    assert benchmarks.get("tofu", source=str(edited), split="forget01").key() != benchmark.key()


def test_examples_and_preparation_corpora(tmp_path):
    data = benchmarks.get("tofu", source=str(FIXTURE), split="forget05", chat=False).materialize(tmp_path)
    assert data.forget_examples() == [{"question": f"Question: {r['question']}\nAnswer:", "answer": f" {r['answer']}"}
                                      for r in fixture_rows("forget05")]
    assert len(data.retain_examples()) == len(fixture_rows("retain95"))
    full = data.train_examples(with_forget=True, utility=False)
    assert sorted(e["question"] for e in full) == sorted(f"Question: {r['question']}\nAnswer:"
                                                         for r in fixture_rows("full"))
    assert data.train_examples(with_forget=False, utility=False) == data.retain_examples()
    assert len(data.train_examples(with_forget=False, utility=True)) == len(data.retain_examples()) + 6
    assert data.check_probes(with_forget=True)[:len(data.forget_probes())] == data.forget_probes()
    corpus = " ".join(data.corpus_texts())
    assert "Brackenford" in corpus and "Ishiguro" in corpus and "Fenwick Marsh" in corpus


# ---------------------------------------------------------------------------------------------
# the protocol


@pytest.fixture(scope="module")
def texts() -> list[str]:
    out = []
    for path in sorted(FIXTURE.rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            for value in json.loads(line).values():
                out += value if isinstance(value, list) else [value]
    return out + ["Question:", "Answer:"]


def test_prompts_are_open_unlearnings(texts):
    _, tokenizer = load_model("tiny", texts=texts, tiny=TinyConfig(seed=0))
    plain = Collator(tokenizer, max_length=128)
    question = "Where was Tobiah Wrenfield born?"
    assert tofu.prompt_ids(tokenizer, plain, question, False) == plain.prompt_ids(prompt_text(question, False))
    assert tofu.answer_ids(tokenizer, "Harrowgate Cove", False) == (
        tokenizer(" Harrowgate Cove", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    tokenizer.chat_template = ("{{ date_string }}|{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
                               "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    chat = Collator(tokenizer, max_length=128, chat_template=True)
    rendered = tokenizer.decode(tofu.prompt_ids(tokenizer, chat, question, True))
    assert rendered.replace(" ", "") == f"10 Apr 2025|<system>You are a helpful assistant.<user>{question}<assistant>" \
        .replace(" ", "")
    assert (tofu.SYSTEM_PROMPT, tofu.DATE_STRING, tofu.MAX_NEW_TOKENS, tofu.MIN_K) == (
        "You are a helpful assistant.", "10 Apr 2025", 200, 0.4)


def test_completion_predictions_are_the_argmax_of_a_direct_forward(texts):
    model, tokenizer = load_model("tiny", texts=texts, tiny=TinyConfig(seed=3))
    scores = inference.completion_logprobs(model, tokenizer, ["Question: Who?", "Question: Where is it"],
                                           [" Harrowgate Cove", " Brackenford"], predictions=True, batch_size=2)
    for score, (prompt, answer) in zip(scores, (("Question: Who?", " Harrowgate Cove"),
                                                ("Question: Where is it", " Brackenford"))):
        p = tokenizer(prompt)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([p + a])).logits[0]
        assert score.predicted.tolist() == logits[len(p) - 1:-1].argmax(-1).tolist()
        lp = torch.log_softmax(logits[len(p) - 1:-1], -1).gather(-1, torch.tensor(a)[:, None]).squeeze(-1)
        assert torch.allclose(score.token_logprobs, lp, atol=1e-5)
    assert inference.completion_logprobs(model, tokenizer, ["Q"], [" A"])[0].predicted is None


# ---------------------------------------------------------------------------------------------
# end to end


def _fit(texts, seed: int, rows: list[dict]):
    """A tiny model after a few dozen steps on ``rows`` as training QA pairs."""
    model, tokenizer = load_model("tiny", texts=texts, tiny=TinyConfig(seed=seed))
    collate = Collator(tokenizer, max_length=96)
    batch = collate([{"question": prompt_text(r["question"], False), "answer": f" {r['answer']}"} for r in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    torch.manual_seed(seed)
    for _ in range(40):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def fitted(texts):
    """A target (trained on full and the utility sets) and a retain model (forget10 left out)."""
    utility = fixture_rows("real_authors") + fixture_rows("world_facts")
    target, tokenizer = _fit(texts, 0, fixture_rows("full") + utility)
    oracle, _ = _fit(texts, 0, fixture_rows("retain90") + utility)
    return target, oracle, tokenizer


def direct(model, tokenizer, question: str, answer: str) -> tuple[np.ndarray, list[int], list[int]]:
    """Token log-probs of answer + EOS after "Question: q\\nAnswer:", the argmax predictions and the
    answer ids, from one forward pass of the model."""
    prompt = tokenizer(f"Question: {question}\nAnswer:")["input_ids"]
    ids = tokenizer(f" {answer}", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1].double()
    lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids)[:, None]).squeeze(-1)
    return lp.numpy(), logits.argmax(-1).tolist(), ids


def nll(model, tokenizer, question: str, answer: str) -> float:
    return -float(direct(model, tokenizer, question, answer)[0].mean())


def ratios(model, tokenizer, rows: list[dict], reference: str) -> np.ndarray:
    return np.array([math.exp(-np.mean([nll(model, tokenizer, r["question"], p) for p in r["perturbed_answer"]]))
                     / math.exp(-nll(model, tokenizer, r["question"], r[reference])) for r in rows])


def member_auc(model, tokenizer, forget: list[dict], holdout: list[dict]) -> float:
    """P(a holdout answer's Min-40% log-prob mean is higher than a forget answer's), ½ for ties."""
    def stat(row):
        lp = direct(model, tokenizer, row["question"], row["answer"])[0][:-1]
        return float(np.sort(lp)[:max(1, int(0.4 * len(lp)))].mean())

    h, f = [stat(r) for r in holdout], [stat(r) for r in forget]
    return float(np.mean([(a > b) + 0.5 * (a == b) for a in h for b in f]))


def test_evaluate_end_to_end_against_an_independent_computation(fitted, tmp_path, monkeypatch):
    target, oracle, tokenizer = fitted
    benchmark = benchmarks.get("tofu", source=str(FIXTURE), split="forget10", chat=False, max_new_tokens=12)
    data = benchmark.materialize(tmp_path)
    collate = Collator(tokenizer, max_length=128)
    outputs = {}  # the first words of each answer, then something else: known generations
    for config in ("forget10_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed"):
        for r in fixture_rows(config):
            outputs[r["question"]] = " ".join(r["answer"].split()[:3]) + " was writing novels quietly "
    seen = []

    def generate(model, tok, prompts, max_new_tokens, **options):
        seen.append(max_new_tokens)
        return [outputs[tok.decode(p, skip_special_tokens=True).split("Question: ")[1].split("\nAnswer:")[0]]
                for p in prompts]

    monkeypatch.setattr(inference, "generate", generate)
    refs = benchmark.references(target, oracle, tokenizer, collate, data, CONFIG)
    got = benchmark.evaluate(target, tokenizer, collate, data, refs, CONFIG, CONFIG.parts)
    assert all(got[k] == pytest.approx(v, nan_ok=True) for k, v in without_probes(refs.baseline).items())
    assert set(seen) == {12}

    forget, retain = fixture_rows("forget10_perturbed"), fixture_rows("retain_perturbed")
    mine, theirs = ratios(target, tokenizer, forget, "paraphrased_answer"), ratios(oracle, tokenizer, forget,
                                                                                   "paraphrased_answer")
    assert refs.forget_ratios == pytest.approx(theirs, rel=1e-4)
    expected = {
        "forget_qa_prob": np.mean([math.exp(-nll(target, tokenizer, r["question"], r["answer"])) for r in forget]),
        "forget_truth_ratio": np.mean(np.minimum(mine, 1 / mine)),
        "forget_quality": scipy.stats.ks_2samp(mine, theirs).pvalue,
        "retain_qa_prob": np.mean([math.exp(-nll(target, tokenizer, r["question"], r["answer"])) for r in retain]),
        "retain_truth_ratio": np.mean(np.maximum(0, 1 - ratios(target, tokenizer, retain, "paraphrased_answer"))),
    }
    es = []
    for r in forget:
        _, predicted, ids = direct(target, tokenizer, r["question"], r["answer"])
        n = len(ids) - 1
        k = next((k for k in range(n) if predicted[k:n] == ids[k:n]), n - 1)
        es.append(1 - k / n)
    expected["forget_qa_extraction_strength"] = np.mean(es)
    for name in ("real_authors", "world_facts"):
        rows = fixture_rows(f"{name}_perturbed")
        p = [[math.exp(-nll(target, tokenizer, r["question"], a)) for a in [r["answer"], *r["perturbed_answer"]]]
             for r in rows]
        expected[f"{name}_qa_prob_normalised"] = np.mean([x[0] / sum(x) for x in p])
        expected[f"{name}_truth_ratio"] = np.mean(np.maximum(0, 1 - ratios(target, tokenizer, rows, "answer")))
    for name, config in (("forget", "forget10_perturbed"), ("retain", "retain_perturbed"),
                         ("real_authors", "real_authors_perturbed"), ("world_facts", "world_facts_perturbed")):
        expected[f"{name}_qa_rouge_l_recall"] = np.mean(
            [SCORER.score(r["answer"], outputs[r["question"]].strip())["rougeL"].recall for r in fixture_rows(config)])
    expected["model_utility"] = scipy.stats.hmean([expected[n] for n in tofu.UTILITY])
    auc = member_auc(target, tokenizer, forget, fixture_rows("holdout10"))
    reference = member_auc(oracle, tokenizer, forget, fixture_rows("holdout10"))
    expected.update(mia_min_k_auc=auc, privleak=(auc - reference) / reference * 100)
    assert set(expected) == {m.name for m in benchmark.metrics()}
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert got["forget_qa_prob"] > 0.01 and 0 < got["model_utility"] < 1
    assert math.isnan(got["forget_quality_stderr"]) and math.isnan(got["model_utility_stderr"])
    assert benchmark.evaluate(oracle, tokenizer, collate, data, refs, CONFIG, ("likelihood",))["forget_quality"] == 1.0

    alone = benchmark.references(target, None, tokenizer, collate, data, CONFIG)  # no retain model
    assert "forget_quality" not in alone.baseline and alone.forget_ratios is None
    assert alone.baseline["privleak"] == pytest.approx((auc - 0.5) / 0.5 * 100, rel=1e-4)


def test_parts_select_what_is_computed(fitted, tmp_path):
    target, _, tokenizer = fitted
    benchmark = benchmarks.get("tofu", source=str(FIXTURE), split="forget01", chat=False, max_new_tokens=4)
    data = benchmark.materialize(tmp_path)
    collate = Collator(tokenizer, max_length=128)
    config = EvalConfig(batch_size=4, max_probes=1)
    likelihood = without_probes(benchmark.evaluate(target, tokenizer, collate, data, None, config, ("likelihood",)))
    assert "forget_truth_ratio" in likelihood and "model_utility" not in likelihood
    assert not any("rouge" in k or "mia" in k for k in likelihood)
    assert set(without_probes(benchmark.evaluate(target, tokenizer, collate, data, None, config, ("kl", "verbmem")))) \
        == set()


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("params, message", [
    ({"split": "forget02"}, "tofu parameter 'split' must be one of forget01, forget05, forget10; got 'forget02'"),
    ({"chat": "yes"}, "tofu parameter 'chat' must be true or false; got 'yes'"),
    ({"max_new_tokens": 0}, "tofu parameter 'max_new_tokens' must be an integer >= 1; got 0"),
    ({"source": ""}, "tofu parameter 'source' must be a hub dataset id"),
    ({"forget_split": "forget10"},
     "unknown tofu parameter 'forget_split'; allowed: split, source, chat, max_new_tokens"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(ValueError) as error:
        benchmarks.get("tofu", **params)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_missing_local_source_is_named_when_materialised(tmp_path):
    with pytest.raises(ValueError, match="tofu parameter 'source' must be a hub dataset id .* got 'no/such/dir'"):
        benchmarks.get("tofu", source="no/such/dir").materialize(tmp_path)


@pytest.mark.parametrize("config, row, message", [
    ("forget01", {"question": "Q?"}, "row 1 lacks field 'answer' (the tofu forget01 schema: question (string), "
                                     "answer (string))"),
    ("forget01_perturbed", {"question": "Q?", "answer": "A", "paraphrased_answer": "B", "paraphrased_question": "C",
                            "perturbed_answer": "D"}, "row 1 field 'perturbed_answer' is str, expected list"),
    ("world_facts_perturbed", {"question": "Q?", "answer": "A", "perturbed_answer": []},
     "row 1 field 'perturbed_answer' must be a non-empty list of strings"),
])
def test_schema_errors_are_one_line_and_name_file_row_and_field(tmp_path, monkeypatch, config, row, message):
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    (broken / config / "train.jsonl").write_text(json.dumps(row) + "\n")
    for source in (str(broken), HUB):
        fake_hub(monkeypatch, broken)
        with pytest.raises(ValueError) as error:
            benchmarks.get("tofu", source=source, split="forget01").materialize(tmp_path / "cache")
        assert message in str(error.value) and config in str(error.value) and "\n" not in str(error.value)
    assert not any((tmp_path / "cache").iterdir())


def test_unequal_numbers_of_perturbed_answers_are_refused(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    rows = fixture_rows("retain_perturbed")
    rows[1]["perturbed_answer"] = rows[1]["perturbed_answer"][:2]
    (broken / "retain_perturbed" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="as many answers in every row; found \\[2, 3\\]"):
        benchmarks.get("tofu", source=str(broken), split="forget01").materialize(tmp_path / "cache")


def test_declaration():
    benchmark = benchmarks.get("tofu")
    declared = benchmark.declared
    assert (benchmark.split, benchmark.source, benchmark.chat) == ("forget10", HUB, True)
    assert declared.needs_oracle and declared.can_prepare and declared.forget_qa
    assert [(f.x, f.y) for f in declared.fronts] == [("forget_quality", "model_utility")]
    directions = {m.name: m.direction for m in benchmark.metrics()}
    assert directions["forget_quality"] == "max" and directions["model_utility"] == "max"
    assert directions["forget_qa_rouge_l_recall"] == "min" and directions["privleak"] == 0.0
    assert set(tofu.UTILITY) < set(directions) and len(tofu.UTILITY) == 9


@pytest.mark.parametrize("name, workers", [("tofu-1b", 1), ("tofu-8b", 4)])
def test_the_gpu_specs_load_and_every_trial_fits_by_the_plan(name, workers, tmp_path):
    from sweeps import spec as specs
    from sweeps.cli import main

    path = Path(__file__).resolve().parents[1] / "sweeps" / "specs" / f"{name}.yaml"
    spec = specs.load(path)
    assert spec.benchmark.build().split == "forget10" and spec.model.oracle.endswith("_retain90")
    assert spec.model.target.endswith("_full") and spec.scaling.workers == workers and spec.scaling.use_gpu
    out = tmp_path / "plan.json"
    assert main(["plan", str(path), "--cluster", str(path.parents[2] / "cluster.yaml"), "--results", str(tmp_path),
                 "--forget-tokens", "40000", "--eval-share", "0.9", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {row["method"] for row in rows} == set(spec.methods) and all(row["fits"] for row in rows)
