"""The synthetic benchmark: deterministic files, the splits BENCHMARKS.md §1 asks for, the layouts."""

import hashlib
import json
from pathlib import Path

import pytest

import benchmarks
from benchmarks import layouts
from benchmarks.synthetic import read
from benchmarks.synthetic.templates import ADVERSARIAL
from benchmarks.synthetic.world import SyntheticParams, generate

SMALL = dict(seed=3, people=12, forget_fraction=0.2, facts=4, bios=2)


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.jsonl")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_same_parameters_give_byte_identical_files(tmp_path):
    bench = benchmarks.get("synthetic", **SMALL)
    a, b = bench.write(tmp_path / "a"), bench.write(tmp_path / "b")
    assert tree_hash(a) == tree_hash(b)
    # Pinned: a change to the generator shows up here (update the pin only on purpose).
    assert tree_hash(a)[:16] == PINNED_HASH
    assert tree_hash(benchmarks.get("synthetic", **dict(SMALL, seed=4)).write(tmp_path / "c")) != tree_hash(a)


PINNED_HASH = "d8043ee2df55e5ef"


def test_splits_and_links():
    people = generate(SyntheticParams(people=40, forget_fraction=0.1))
    by = {s: [p for p in people if p.split == s] for s in ("forget", "retain_train", "retain_eval", "holdout", "neighbor")}
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
    bench = benchmarks.get("synthetic", **SMALL)
    first = bench.materialize(tmp_path).root
    stamp = (first / "COMPLETE").stat().st_mtime_ns
    assert bench.materialize(tmp_path).root == first and (first / "COMPLETE").stat().st_mtime_ns == stamp
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
    metrics = {m.name: m.direction for m in benchmarks.get("synthetic").metrics}
    assert metrics["forget_qa_rouge_l_recall"] == "min" and metrics["retain_qa_rouge_l_recall"] == "max"
    assert metrics["privleak"] == 0.0
    assert "softlabel_kl_undial_g10_oracle_forget_facts" in metrics
