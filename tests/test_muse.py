"""The MUSE benchmark (`docs/benchmarks/muse.md`): the fixture through the hub's code path, the official
prompts and scores against rouge_score and a brute-force AUC, an end-to-end evaluation on a tiny
model, schema and parameter errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer

import benchmarks
from benchmarks import layouts, muse
from benchmarks.common import EvalConfig, without_probes
from helpers import hub
from unlearn.models import IM_END, TinyConfig, load_model

FIXTURE = Path(__file__).parent / "fixtures" / "muse_news"
HUB = "muse-bench/MUSE-News"
SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
STOPS = ["\n\n", "\nQuestion", "Question:"]


def official_f1(prediction: str, reference: str) -> float:
    return SCORER.score(reference, prediction)["rougeL"].fmeasure * 100


def official_cut(output: str) -> str:
    for word in STOPS:
        output = output.split(word)[0]
    return output


def fixture_rows(config: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURE / config / f"{split}.jsonl").read_text().splitlines()]


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.jsonl")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fake_hub(monkeypatch, root: Path = FIXTURE) -> list:
    return hub.fake_hub(monkeypatch, root, "muse")


no_hub = hub.no_hub


# ---------------------------------------------------------------------------------------------
# data


def test_the_hub_code_path_gives_what_the_local_directory_gives(tmp_path, monkeypatch):
    calls = fake_hub(monkeypatch)
    hub = benchmarks.get("muse", source=HUB).materialize(tmp_path)
    assert {repo for repo, _, _ in calls} == {HUB} and len(calls) == len(muse.SPLITS)
    monkeypatch.setattr(layouts, "hub_rows", no_hub)
    local = benchmarks.get("muse", source=str(FIXTURE)).materialize(tmp_path)
    assert hub.root != local.root
    assert dataclasses.replace(hub, root=local.root) == local
    assert tree_hash(hub.root) == tree_hash(local.root)
    assert local.forget_examples() == [{"text": r["text"]} for r in fixture_rows("raw", "forget")]
    assert local.retain_examples() == [{"text": r["text"]} for r in fixture_rows("raw", "retain1")]
    assert local.chat is False and len(local.knowmem["forget_qa_icl"]) == len(local.knowmem["retain_qa_icl"]) == 10
    assert local.privleak["retain"] == [r["text"] for r in fixture_rows("privleak", "retain")]


def test_materialize_is_cached_atomic_and_read_back_offline(tmp_path, monkeypatch):
    benchmark = benchmarks.get("muse", source=str(FIXTURE))
    first = benchmark.materialize(tmp_path)
    stamp = (first.root / "COMPLETE").stat().st_mtime_ns
    monkeypatch.setattr(layouts, "hub_rows", no_hub)
    assert benchmark.materialize(tmp_path) == first and (first.root / "COMPLETE").stat().st_mtime_ns == stamp
    assert benchmark.read(first.root) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.root.name] == [f"muse-{benchmark.key()}"]
    edited = tmp_path / "edited"
    shutil.copytree(FIXTURE, edited)
    (edited / "raw" / "forget.jsonl").write_text('{"text": "another article"}\n')
    assert benchmarks.get("muse", source=str(edited)).key() != benchmark.key()  # a changed source is re-read


def test_older_retain2_split_names(tmp_path, monkeypatch):
    old = tmp_path / "old"
    shutil.copytree(FIXTURE, old)
    for config, new, previous in (("knowmem", "retain_qa", "retain2_qa"),
                                  ("knowmem", "retain_qa_icl", "retain2_qa_icl"),
                                  ("privleak", "retain", "retain2")):
        (old / config / f"{new}.jsonl").rename(old / config / f"{previous}.jsonl")
    expected = benchmarks.get("muse", source=str(FIXTURE)).materialize(tmp_path / "a")
    local = benchmarks.get("muse", source=str(old)).materialize(tmp_path / "b")
    fake_hub(monkeypatch, old)
    hub = benchmarks.get("muse", source=HUB).materialize(tmp_path / "c")
    for data in (local, hub):
        assert dataclasses.replace(data, root=expected.root) == expected
        assert (data.root / "knowmem" / "retain_qa.jsonl").is_file()  # the copy uses the current names


# ---------------------------------------------------------------------------------------------
# the protocol


def test_prompts_are_the_literal_strings_of_the_protocol(tmp_path):
    icl = [{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]
    assert muse.knowmem_prompt(icl, "Q?") == ("Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\n"
                                              "Question: Q?\nAnswer: ")
    assert muse.knowmem_prompt([], "Q?") == "Question: Q?\nAnswer: "
    assert muse.KNOWMEM_STOP == ("\n\n", "\nQuestion", "Question:")
    assert (muse.VERBMEM_TOKENS, muse.KNOWMEM_TOKENS, muse.MIN_K) == (128, 32, 0.4)
    assert muse.cut_answer("Ada Pryce\n\nQuestion: Who?") == "Ada Pryce"
    assert muse.cut_answer("Ada Pryce\nQuestion 2") == "Ada Pryce"
    assert muse.cut_answer("Ada Pryce. Question: next") == "Ada Pryce. "
    assert muse.cut_answer("Ada\nPryce question:") == "Ada\nPryce question:"  # case-sensitive, as the official code

    data = benchmarks.get("muse", source=str(FIXTURE)).materialize(tmp_path)
    prompts, answers = muse.knowmem_prompts(data, "forget_qa", None)
    assert len(prompts) == 3 and answers[0] == "Ada Pryce"
    assert prompts[0].startswith("Question: Which town closed its ferry terminal?\nAnswer: Kelmouth\n\n"
                                 "Question: What did the council find in the pier?\nAnswer: cracks\n\n")
    assert prompts[0].endswith("Question: On which day did Kelmouth vote?\nAnswer: Tuesday\n\n"
                               "Question: Who is the mayor of Kelmouth?\nAnswer: ")
    assert prompts[0].count("Question: ") == 11
    retain, _ = muse.knowmem_prompts(data, "retain_qa", 1)
    assert retain == [muse.knowmem_prompt(fixture_rows("knowmem", "retain_qa_icl"),
                                          "How many books does the new Pellham library hold?")]


@pytest.fixture(scope="module")
def tiny():
    texts = [v for path in sorted(FIXTURE.rglob("*.jsonl")) for line in path.read_text().splitlines()
             for v in json.loads(line).values()]
    return load_model("tiny", texts=texts, tiny=TinyConfig(seed=0))


def test_verbmem_reference_is_the_first_128_tokens_with_bos(tiny):
    _, tokenizer = tiny
    gt = " ".join(f"word{i}" for i in range(200))
    ids = tokenizer(gt)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) > 128
    reference = muse.verbmem_reference(tokenizer, gt)
    assert reference == tokenizer.decode(ids[1:128]) and gt.startswith(reference) and reference != gt
    short = fixture_rows("verbmem", "forget")[0]["gt"]
    assert muse.verbmem_reference(tokenizer, short) == short


KNOWN = [  # (output, answer)
    ("Ada Pryce, the mayor\n\nQuestion: Who", "Ada Pryce"),
    (" 40 million pounds.", "40 million pounds"),
    ("It was sold in Tarsk\nQuestion", "at an auction in Dunmere"),
    ("", "80,000"),
    ("Mara's play; by Mara Voss, and Voss", "Mara Voss"),
    ("The Regional prize for rye bread Question: again", "the regional prize for its rye bread"),
]


def test_scores_equal_rouge_score_on_known_outputs(tiny, tmp_path, monkeypatch):
    for output, answer in KNOWN:
        assert muse.knowmem_score(output, answer) == official_f1(official_cut(output), answer)
        assert muse.rouge_f1(output, answer) == official_f1(output, answer)

    _, tokenizer = tiny
    data = benchmarks.get("muse", source=str(FIXTURE)).materialize(tmp_path)
    forget, retain = data.knowmem["forget_qa"], data.knowmem["retain_qa"]
    chosen = {r["prompt"]: r["gt"][:40] + " and then something else" for r in data.verbmem}
    for split, rows, outputs in (("forget_qa", forget, KNOWN[:3]), ("retain_qa", retain, KNOWN[3:])):
        for row, (output, _) in zip(rows, outputs):
            chosen[muse.knowmem_prompt(data.knowmem[f"{split}_icl"], row["question"])] = output
    seen = []

    def generate(model, tokenizer, prompts, max_new_tokens, stop, config):
        seen.append((max_new_tokens, stop))
        return [chosen[p] for p in prompts]

    monkeypatch.setattr(muse, "generate", generate)
    out = benchmarks.get("muse").evaluate(None, tokenizer, None, data, None, EvalConfig(), ("generation", "verbmem"))
    assert seen == [(32, muse.KNOWMEM_STOP), (128, ())]
    for name, rows, outputs in (("forget_knowmem_rouge_l_f1", forget, KNOWN[:3]),
                                ("retain_knowmem_rouge_l_f1", retain, KNOWN[3:])):
        scores = [official_f1(official_cut(o), r["answer"]) for r, (o, _) in zip(rows, outputs)]
        assert out[name] == pytest.approx(np.mean(scores), abs=1e-9)
        assert out[f"{name}_stderr"] == pytest.approx(np.std(scores, ddof=1) / math.sqrt(len(scores)), abs=1e-9)
    verbatim = [official_f1(chosen[r["prompt"]], r["gt"]) for r in data.verbmem]  # gt is shorter than 128 tokens
    assert 0 < out["forget_verbmem_rouge_l_f1"] == pytest.approx(np.mean(verbatim), abs=1e-9)


def brute_stat(logprobs: np.ndarray) -> float:
    k = max(1, int(np.floor(0.4 * len(logprobs))))
    return float(np.sort(logprobs)[:k].mean())


def brute_auc(members: list[float], nonmembers: list[float]) -> float:
    return float(np.mean([(m > n) + 0.5 * (m == n) for m in members for n in nonmembers]))


def test_privleak_equals_an_independent_computation():
    rng = np.random.default_rng(0)
    forget = [rng.normal(-2.0, 1.0, size=n) for n in (1, 2, 3, 5, 8, 13, 40)]
    holdout = [rng.normal(-2.3, 1.0, size=n) for n in (2, 4, 6, 9, 30)] + [forget[2].copy()]  # one tie
    got = muse.privleak_scores(forget, holdout, 0.4772)
    auc = brute_auc([brute_stat(h) for h in holdout], [brute_stat(f) for f in forget])
    assert got["mia_min_k_auc"] == pytest.approx(auc, abs=1e-12)
    assert got["privleak"] == pytest.approx((auc - 0.4772) / 0.4772 * 100, abs=1e-9)
    assert got["privleak_stderr"] == pytest.approx(got["mia_min_k_auc_stderr"] / 0.4772 * 100)

    # The target has memorised the forget texts: they are more likely than the holdout texts.
    target = muse.privleak_scores([rng.uniform(-0.2, 0, size=20) for _ in range(5)],
                                  [rng.uniform(-6, -1, size=20) for _ in range(5)], 0.4772)
    assert target["mia_min_k_auc"] == 0.0 and target["privleak"] == pytest.approx(-100.0)
    assert set(muse.privleak_scores(forget, holdout, None)) == {"mia_min_k_auc", "mia_min_k_auc_stderr"}
    assert math.isnan(muse.privleak_scores(forget, holdout, 0.0)["privleak"])


# ---------------------------------------------------------------------------------------------
# end to end


@pytest.fixture(scope="module")
def fitted(tiny):
    """The tiny model after a few dozen steps on the bare QA pairs, so KnowMem is not all zeros."""
    model, tokenizer = tiny
    lines = [muse.knowmem_prompt([], r["question"]) + r["answer"] + "\n\n"
             for split in ("forget_qa", "retain_qa") for r in fixture_rows("knowmem", split)]
    batch = tokenizer(lines, return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


def independent_knowmem(model, tokenizer, split: str) -> tuple[list[str], float]:
    """Outputs and mean ROUGE-L F1 × 100 with transformers' own greedy generate, one prompt at a time."""
    icl = fixture_rows("knowmem", f"{split}_icl")
    shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in icl)
    outputs, scores = [], []
    for row in fixture_rows("knowmem", split):
        ids = tokenizer(shots + f"Question: {row['question']}\nAnswer: ", return_tensors="pt").input_ids
        assert ids[0, 0] == tokenizer.bos_token_id
        new = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                             eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)],
                             pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:]
        outputs.append(official_cut(tokenizer.decode(new, skip_special_tokens=True)))
        scores.append(official_f1(outputs[-1], row["answer"]))
    return outputs, float(np.mean(scores))


def test_evaluate_end_to_end_on_a_tiny_model(fitted, tmp_path, monkeypatch):
    model, tokenizer = fitted
    benchmark = benchmarks.get("muse", source=str(FIXTURE))
    data = benchmark.materialize(tmp_path)
    generated = []
    real_generate = muse.generate

    def generate(*args):
        generated.append(real_generate(*args))
        return generated[-1]

    monkeypatch.setattr(muse, "generate", generate)

    refs = benchmark.references(model, None, tokenizer, None, data, EvalConfig(batch_size=4))
    names = {m.name for m in benchmark.metrics()}
    assert set(without_probes(refs.baseline)) == names | {f"{n}_stderr" for n in names}
    assert all(math.isfinite(v) for v in without_probes(refs.baseline).values())
    assert (refs.auc_retrain, refs.auc_retrain_source) == (0.4772, "published")
    # NPO's reference NLLs are stored by the sweep beside the references, not in them
    assert {f.name for f in dataclasses.fields(refs)} == {"auc_retrain", "auc_retrain_source", "baseline"}
    assert pickle.loads(pickle.dumps(refs)) == refs

    for split, name, outputs in (("forget_qa", "forget_knowmem_rouge_l_f1", generated[0][:3]),
                                 ("retain_qa", "retain_knowmem_rouge_l_f1", generated[0][3:])):
        independent, score = independent_knowmem(model, tokenizer, split)
        assert [official_cut(o) for o in outputs] == independent
        assert refs.baseline[name] == pytest.approx(score, abs=1e-9)
    assert refs.baseline["forget_knowmem_rouge_l_f1"] > 0

    mia_only = EvalConfig(batch_size=4, parts=("mia",))
    oracle_refs = benchmark.references(model, model, tokenizer, None, data, mia_only)
    assert oracle_refs.auc_retrain_source == "oracle"
    assert oracle_refs.auc_retrain == refs.baseline["mia_min_k_auc"] > 0
    assert oracle_refs.baseline["privleak"] == pytest.approx(0.0, abs=1e-9)  # the oracle itself scores 0
    without_refs = benchmark.evaluate(model, tokenizer, None, data, None, mia_only, ("mia",))
    assert without_refs == {k: v for k, v in refs.baseline.items() if "mia" in k or "privleak" in k}

    quick = benchmark.evaluate(model, tokenizer, None, data, refs, EvalConfig(max_probes=1),
                           ("generation", "kl", "utility"))
    assert set(without_probes(quick)) == {"forget_knowmem_rouge_l_f1", "forget_knowmem_rouge_l_f1_stderr",
                          "retain_knowmem_rouge_l_f1", "retain_knowmem_rouge_l_f1_stderr"}
    assert quick["forget_knowmem_rouge_l_f1_stderr"] == 0.0 and len(generated[-1]) == 2


# ---------------------------------------------------------------------------------------------
# errors


def broken_copy(tmp_path: Path, config: str, split: str, rows: list[dict] | None) -> Path:
    source = tmp_path / "src"
    shutil.copytree(FIXTURE, source)
    path = source / config / f"{split}.jsonl"
    if rows is None:
        path.unlink()
    else:
        layouts.write_jsonl(path, rows)
    return source


@pytest.mark.parametrize("config, split, rows, message", [
    ("knowmem", "retain_qa_icl", None,
     r"split 'retain_qa_icl' of config 'knowmem' not found under .*src; present: forget_qa, forget_qa_icl, retain_qa$"),
    ("verbmem", "forget", [{"prompt": "p", "gt": "g"}, {"prompt": "p"}],
     r"src/verbmem/forget.jsonl: row 2 lacks field 'gt' "
     r"\(the muse verbmem schema: prompt \(string\), gt \(string\)\)$"),
    ("raw", "holdout", [{"text": 3}],
     r"src/raw/holdout.jsonl: row 1 field 'text' is int, expected string \(the muse raw schema: text \(string\)\)$"),
])
def test_schema_errors_are_one_line_and_name_file_field_and_schema(tmp_path, config, split, rows, message):
    source = broken_copy(tmp_path, config, split, rows)
    with pytest.raises(ValueError, match=message) as error:
        benchmarks.get("muse", source=str(source)).materialize(tmp_path / "cache")
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "cache").iterdir())  # no partial copy, no temporary folder left


def test_schema_errors_through_the_hub_code_path(tmp_path, monkeypatch):
    fake_hub(monkeypatch, broken_copy(tmp_path, "knowmem", "forget_qa", [{"question": "Q?", "answer": 7}]))
    with pytest.raises(ValueError, match=r"field 'answer' is int, expected string \(the muse knowmem schema: "
                                         r"question \(string\), answer \(string\)\)$"):
        benchmarks.get("muse").materialize(tmp_path / "cache")


@pytest.mark.parametrize("params, message", [
    (dict(corpus="movies"), r"^muse.corpus must be one of news, books; got 'movies'$"),
    (dict(source=""), r"^muse.source must be a hub dataset id \(owner/name\) or a local directory; got ''$"),
    (dict(source=3), r"^muse.source must be a hub dataset id"),
    (dict(auc_retrain=1.5), r"^muse.auc_retrain must be a number in \(0, 1\]; got 1.5$"),
    (dict(auc_retrain="0.5"), r"^muse.auc_retrain must be a number in \(0, 1\]; got '0.5'$"),
    (dict(auc_retrain=True), r"^muse.auc_retrain must be a number"),
    (dict(corpora="news"), r"^unknown muse parameter 'corpora'; allowed: corpus, source, auc_retrain$"),
    # the soft-label γ belong to the sweep's UnDIAL space now, not to the benchmark
    (dict(undial_gammas=(3.0, 10.0)),
     r"^unknown muse parameter 'undial_gammas'; allowed: corpus, source, auc_retrain$"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(ValueError, match=message) as error:
        benchmarks.get("muse", **params)
    assert "\n" not in str(error.value)


def test_a_missing_local_source_is_named_when_materialised(tmp_path):
    benchmark = benchmarks.get("muse", source=str(tmp_path / "no" / "such" / "dir"))  # a worker never materialises
    with pytest.raises(ValueError, match=r"^muse.source must be a hub dataset id \(owner/name\) or an existing "
                                         r"local directory laid out as <root>/<config>/<split>.jsonl; got '/"):
        benchmark.materialize(tmp_path / "cache")


def test_defaults_and_metric_directions():
    news, books = benchmarks.get("muse"), benchmarks.get("muse", corpus="books")
    assert (news.source, news.auc_retrain) == (HUB, 0.4772)
    assert (books.source, books.auc_retrain) == ("muse-bench/MUSE-Books", 0.5393)
    assert benchmarks.get("muse", auc_retrain=0.5).auc_retrain == 0.5
    assert news.chat is False and news.name == "muse" and "muse" in benchmarks.names()
    assert news.metrics() == news.metrics(EvalConfig(softlabel_gammas=(3.0,)))  # no soft-label analysis in MUSE
    assert {m.name: (m.direction, m.role, m.scale) for m in news.metrics()} == {
        "forget_verbmem_rouge_l_f1": ("min", "forget", 100), "forget_knowmem_rouge_l_f1": ("min", "forget", 100),
        "retain_knowmem_rouge_l_f1": ("max", "retain", 100), "privleak": (0.0, "privacy", 100),
        "mia_min_k_auc": (0.5, "privacy", 1)}


def test_declaration_names_only_declared_metrics_and_fits_their_directions():
    benchmark = benchmarks.get("muse")
    declared, by_name = benchmark.declared, {m.name: m for m in benchmark.metrics()}
    assert (declared.needs_oracle, declared.can_prepare, declared.average_over) == (False, False, ())
    named = {m for f in declared.fronts for m in (f.x, f.y, f.size) if m} | set(declared.trajectories)
    named |= {declared.selection.forget, declared.selection.retain, *declared.selection.floors}
    assert named <= set(by_name)
    assert all(by_name[f.x].role == "forget" for f in declared.fronts)  # forget on x, what must survive on y
    assert all(by_name[f.y].role in ("retain", "neighbour", "utility") for f in declared.fronts)
    assert by_name[declared.selection.forget].direction == "min"
    assert by_name[declared.selection.retain].direction == "max"
    assert (declared.selection.forget, declared.selection.retain) == ("forget_knowmem_rouge_l_f1",
                                                                      "retain_knowmem_rouge_l_f1")
