"""The synthetic benchmark: deterministic files, the splits `docs/benchmarks/synthetic.md` describes, the layouts."""

import hashlib
import json
from pathlib import Path

import pytest

import benchmarks
from benchmarks import layouts
from benchmarks.common import EvalConfig
from benchmarks.synthetic import Probe, SyntheticData, read
from benchmarks.synthetic import data as synthetic_data
from benchmarks.synthetic.templates import ADVERSARIAL
from benchmarks.synthetic.world import SyntheticParams, generate

SMALL = dict(seed=3, people=12, forget_fraction=0.2, facts=4, bios=2)


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.jsonl")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_same_parameters_give_byte_identical_files(tmp_path):
    benchmark = benchmarks.get("synthetic", **SMALL)
    a, b = benchmark.write(tmp_path / "a"), benchmark.write(tmp_path / "b")
    assert tree_hash(a) == tree_hash(b)
    # Pinned: a change to the generator shows up here (update the pin only on purpose).
    assert tree_hash(a)[:16] == PINNED_HASH
    assert tree_hash(benchmarks.get("synthetic", **dict(SMALL, seed=4)).write(tmp_path / "c")) != tree_hash(a)


PINNED_HASH = "d8043ee2df55e5ef"


def test_splits_and_links():
    people = generate(SyntheticParams(people=40, forget_fraction=0.1))
    by = {s: [p for p in people if p.split == s]
          for s in ("forget", "retain_train", "retain_eval", "holdout", "neighbor")}
    assert [len(by[s]) for s in by] == [4, 14, 14, 8, 4]
    names = [p.name for p in people] + [p.facts["partner"] for p in people]
    assert len(set(names)) == len(names)  # every person and partner is distinct
    for forget in by["forget"]:
        neighbour = next(p for p in by["neighbor"] if p.name == forget.linked)
        assert neighbour.linked == forget.name
        assert neighbour.name in forget.bio(0) and forget.name in neighbour.bio(0)
    assert all(len(p.facts) == 10 for p in people)


def test_paraphrased_bios_differ_and_carry_every_fact():
    person = generate(SyntheticParams())[0]
    bios = [person.bio(v) for v in range(4)]
    assert len(set(bios)) == 4
    for bio in bios:
        assert all(value in bio for value in person.facts.values())


def test_read_back_through_the_layout_loaders(tmp_path):
    data = benchmarks.get("synthetic", **SMALL).materialize(tmp_path)
    forget_people = {p.subject for p in data.probes["forget_qa"]}
    assert len(forget_people) == 2
    assert len(data.probes["forget_qa"]) == 2 * 4 and len(data.probes["forget_fb"]) == 2 * 4
    assert {p.kind for p in data.probes["forget_aa"]} == set(ADVERSARIAL)
    assert all("___" in p.question for p in data.probes["forget_fb"])
    target = data.train_examples(with_forget=True, utility=False)
    oracle = data.train_examples(with_forget=False, utility=False)
    forget_names = "|".join(forget_people)
    leaked = [e for e in oracle for n in forget_people if n in e.get("text", "") + e.get("question", "")
              and "often works with" not in e.get("text", "")]
    assert not leaked  # the oracle never trains on a forget person's facts
    assert len(target) > len(oracle) and forget_names
    assert all(e in target for e in data.forget_examples())
    assert all(e in target for e in data.retain_examples()) and all(e in target for e in data.retain_eval_examples())
    assert not set(map(json.dumps, data.retain_examples())) & set(map(json.dumps, data.retain_eval_examples()))
    assert len(data.mia["holdout"]) > 0 and len(data.verbatim) == 2 * 2


def test_materialize_is_cached_and_atomic(tmp_path):
    benchmark = benchmarks.get("synthetic", **SMALL)
    first = benchmark.materialize(tmp_path).root
    stamp = (first / "COMPLETE").stat().st_mtime_ns
    assert benchmark.materialize(tmp_path).root == first and (first / "COMPLETE").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".synthetic-")]


def test_loaders_name_what_is_wrong(tmp_path):
    root = benchmarks.get("synthetic", **SMALL).write(tmp_path / "b")
    with pytest.raises(ValueError, match="split 'retain3' of config 'raw' not found.*present: forget"):
        layouts.load(root / "muse", "muse", "raw", "retain3")
    with pytest.raises(ValueError, match="config 'scal2' is not part of the muse layout"):
        layouts.load(root / "muse", "muse", "scal2", "forget")
    broken = root / "muse" / "knowmem" / "forget_qa.jsonl"
    broken.write_text('{"question": "Q?"}\n')
    with pytest.raises(ValueError, match="row 1 lacks field 'answer'"):
        layouts.load(root / "muse", "muse", "knowmem", "forget_qa")
    broken.write_text("not json\n")
    with pytest.raises(ValueError, match="forget_qa.jsonl:1: not valid JSON"):
        read(root, chat=False)


def test_older_muse_split_names_and_rwku_target_field(tmp_path):
    layouts.write_jsonl(tmp_path / "knowmem" / "retain2_qa.jsonl", [{"question": "q", "answer": "a"}])
    assert layouts.load(tmp_path, "muse", "knowmem", "retain_qa") == [{"question": "q", "answer": "a"}]
    layouts.write_jsonl(tmp_path / "mia_forget" / "test.jsonl", [{"text": "t", "target": "X"}])
    assert layouts.load(tmp_path, "rwku", "mia_forget", "test")[0]["subject"] == "X"


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="unknown benchmark 'muse-newz'; known: .*synthetic"):
        benchmarks.get("muse-newz")
    with pytest.raises(ValueError, match="unknown synthetic parameter 'persons'"):
        benchmarks.get("synthetic", persons=3)
    with pytest.raises(ValueError, match=r"synthetic.forget_fraction must be a number in \(0, 0.5\)"):
        benchmarks.get("synthetic", forget_fraction=0.7)
    with pytest.raises(ValueError, match="synthetic.prompt must be one of plain, chat"):
        benchmarks.get("synthetic", prompt="xml")


def test_metrics_carry_directions():
    benchmark = benchmarks.get("synthetic")
    metrics = {m.name: m.direction for m in benchmark.metrics()}
    assert metrics["forget_qa_rouge_l_recall"] == "min" and metrics["retain_qa_rouge_l_recall"] == "max"
    assert metrics["privleak"] == 0.0
    assert "softlabel_kl_oracle_unilogit_forget" in metrics  # Unilogit's label needs no γ
    assert not any("undial" in name for name in metrics)  # no γ configured: no UnDIAL soft-label metric
    gammas = {m.name for m in benchmark.metrics(EvalConfig(softlabel_gammas=(3, 10.0)))}
    assert {n for n in gammas if "undial" in n} == {
        f"softlabel_kl_{a}_{b}_{t}" for g in ("3", "10")
        for a, b in (("oracle", f"undial_g{g}"), (f"undial_g{g}", "oracle"))
        for t in ("forget", "forget_facts")}
    assert "softlabel_kl_undial_g10_oracle_forget_facts" in gammas and set(metrics) <= gammas


def test_metric_roles_scales_and_declaration():
    benchmark = benchmarks.get("synthetic")
    by_name = {m.name: m for m in benchmark.metrics(EvalConfig(softlabel_gammas=(10.0,)))}
    assert by_name["privleak"].scale == 100  # (AUC − AUC_oracle) / AUC_oracle × 100
    assert all(m.scale == 1 for n, m in by_name.items() if n != "privleak")
    prefix_role = {"forget": "forget", "retain": "retain", "neighbor": "neighbour", "utility": "utility",
                   "mia": "privacy", "privleak": "privacy", "kl": "kl", "softlabel": "kl"}
    assert all(m.role == prefix_role[n.split("_")[0]] for n, m in by_name.items())
    declared = benchmark.declared
    assert (declared.needs_oracle, declared.can_prepare, declared.average_over) == (True, True, ())
    named = {m for f in declared.fronts for m in (f.x, f.y, f.size) if m} | set(declared.trajectories)
    named |= {declared.selection.forget, declared.selection.retain, *declared.selection.floors}
    assert named <= {m.name for m in benchmark.metrics()}  # declared without any soft-label γ
    assert by_name[declared.selection.forget].direction == "min"
    assert all(by_name[m].direction == "max" for m in (declared.selection.retain, *declared.selection.floors))


def test_preparation_probes_and_corpus(tmp_path):
    data = benchmarks.get("synthetic", **SMALL).materialize(tmp_path)
    assert isinstance(data, SyntheticData) and SyntheticData is synthetic_data.SyntheticData
    assert all(isinstance(p, Probe) for group in data.probes.values() for p in group)
    forget_qa = [(r["query"], r["answer"]) for r in layouts.load(data.root / "rwku", "rwku", "forget_level2", "test")]
    assert [(p.question, p.answer) for p in data.forget_probes()] == forget_qa and forget_qa
    retain_qa = [(r["question"], r["answer"]) for r in layouts.load(data.root / "muse", "muse", "knowmem",
                                                                      "retain_qa")]
    assert [(p.question, p.answer) for p in data.check_probes(with_forget=False)] == retain_qa and retain_qa
    assert data.check_probes(with_forget=True) == data.forget_probes() + data.check_probes(with_forget=False)
    # the check probes are questions the respective model trains on
    for with_forget in (True, False):
        trained = {e["question"] for e in data.train_examples(with_forget=with_forget, utility=False)
                   if "question" in e}
        assert all(f"Question: {p.question}\nAnswer:" in trained for p in data.check_probes(with_forget=with_forget))
    # utility adds the general-knowledge answers, to the target and the oracle alike
    utility = [e for e in data.train_examples(with_forget=False, utility=True)
               if e not in data.train_examples(with_forget=False, utility=False)]
    assert utility == [{"question": f"Question: {p.question}\nAnswer:", "answer": f" {p.answer}"}
                       for p in data.probes["utility_qa"]] and utility
    corpus = " ".join(data.corpus_texts())
    for path in sorted(data.root.rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            for key in ("text", "question", "answer", "query", "prompt", "gt"):  # what a model reads or says
                if key in row:
                    assert row[key] in corpus, (path, key, row[key])
