"""Relearning (``eval.relearn``) without Ray: which examples are relearned, which probes are held
back, the refusals, and the fine-tuning itself on a toy model."""

import pytest
import torch
from toy import toy_collate, toy_examples, toy_model

from benchmarks.spec import Metric
from helpers.sweep_specs import TINY, apply, raw
from sweeps import relearn as sweep_relearn
from sweeps import spec as specs
from unlearn import losses, relearn
from unlearn.engine import PlainEngine
from unlearn.relearn import RelearnConfig

GROUPS = ["a", "b", "c", "a", "b", "c", "a", "b", "c", "d"]  # 10 examples of 4 groups, interleaved


def test_whole_groups_are_taken_first_and_the_untouched_ones_held_back():
    choice = relearn.choose(len(GROUPS), 4, GROUPS)
    touched = {GROUPS[i] for i in choice.indices}
    assert len(choice.indices) == 4 and len(touched) == 2  # 3 of one group, 1 of the next
    assert set(choice.heldout) == {"a", "b", "c", "d"} - touched
    assert relearn.choose(len(GROUPS), 4, GROUPS) == choice  # seeded: the same every time
    assert relearn.choose(len(GROUPS), 4, GROUPS, seed=1) != choice


def test_the_whole_set_is_relearned_with_all_or_its_size_and_nothing_is_held_back():
    for examples in ("all", len(GROUPS)):
        choice = relearn.choose(len(GROUPS), examples, GROUPS)
        assert choice.indices == tuple(range(len(GROUPS))) and choice.heldout is None
    assert relearn.choose(5, "all", None).heldout is None  # a benchmark without groups: the whole set only


@pytest.mark.parametrize("examples,groups,message", [
    (11, GROUPS, "eval.relearn.examples must be at most the forget set's 10 examples, or 'all'; got 11"),
    (3, None, "eval.relearn.examples must be 'all': this benchmark cannot say which probes"),
    (4, ["a", "b"] * 3, "eval.relearn.examples must be at most 3 (to leave a group's probes held back) or 'all'; "
     "got 4"),  # both groups touched: no probe left to score
])
def test_impossible_counts_are_refused_in_one_line(examples, groups, message):
    with pytest.raises(specs.SpecError) as error:
        relearn.choose(len(groups or GROUPS), examples, groups)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    spec = specs.load(TINY)
    return spec, spec.benchmark.build().materialize(tmp_path_factory.mktemp("data"))


def test_synthetic_forget_examples_are_grouped_by_person(tiny_data):
    _, data = tiny_data
    people, groups = data.forget_people(), data.forget_groups()
    assert len(groups) == len(data.forget_examples()) and set(groups) == set(people) and len(people) == 4
    for example, person in zip(data.forget_examples(), groups):
        assert person in (example.get("text") or example["question"])
    # the probes of each person, taken together, are every forget probe once
    for group in ("forget_fb", "forget_qa", "forget_aa", "forget_qa_paraphrase"):
        parts = [data.with_forget_groups([p]).probes[group] for p in people]
        assert sorted(map(repr, sum(parts, []))) == sorted(map(repr, data.probes[group]))
    assert sum(len(data.with_forget_groups([p]).verbatim) for p in people) == len(data.verbatim)


def test_the_relearned_people_s_probes_are_not_scored(tiny_data):
    """With part of the forget set relearned, the held-back data holds exactly the forget probes of
    the people none of the relearned examples is about; every other probe group is untouched."""
    spec, data = tiny_data
    config = RelearnConfig(examples=10, steps=2, lr=1e-3)
    choice, heldout = sweep_relearn.split(data, config)
    groups = data.forget_groups()
    relearned = {groups[i] for i in choice.indices}
    assert len(choice.indices) == 10 and relearned and set(choice.heldout) == set(data.forget_people()) - relearned
    forget_probes = [p for g, group in heldout.probes.items() if g.startswith("forget_") for p in group]
    assert forget_probes
    for probe in forget_probes:
        assert not any(person in probe.question or person == probe.subject for person in relearned)
        assert any(person in probe.question or person == probe.subject for person in choice.heldout)
    assert all(not any(person in r["prompt"] + r["gt"] for person in relearned) for r in heldout.verbatim)
    assert {g: len(v) for g, v in heldout.probes.items() if not g.startswith("forget_")} == \
        {g: len(v) for g, v in data.probes.items() if not g.startswith("forget_")}
    whole, same = sweep_relearn.split(data, RelearnConfig(examples="all", steps=2, lr=1e-3))
    assert same is data and whole.heldout is None


def test_a_sweep_asking_too_many_examples_is_refused_before_anything_runs(tiny_data):
    spec, data = tiny_data
    size = len(data.forget_examples())
    for examples, message in ((size + 1, f"at most the forget set's {size} examples"),
                              (size - 1, "to leave a group's probes held back")):
        bad = specs.from_dict(apply(raw(), {"eval": {"relearn": {"examples": examples, "steps": 2, "lr": 1e-3}}}))
        with pytest.raises(specs.SpecError, match=message):
            sweep_relearn.check_data(bad, [data])
    good = specs.from_dict(apply(raw(), {"eval": {"relearn": {"examples": 7, "steps": 2, "lr": 1e-3}}}))
    sweep_relearn.check_data(good, [data])


def test_the_spec_keeps_relearn_as_written():
    spec = specs.from_dict(apply(raw(), {"eval": {"relearn": {"examples": "all", "steps": 3, "lr": 2e-3}}}))
    assert spec.eval.relearn == RelearnConfig("all", 3, 2e-3)
    assert specs.from_dict(specs.to_dict(spec)) == spec
    assert specs.from_dict(raw()).eval.relearn is None


def test_relearned_metrics_take_the_direction_of_the_forget_metric_they_measure():
    metrics = (Metric("forget_x", "min", "forget", ""), Metric("retain_x", "max", "retain", ""))
    assert sweep_relearn.directions(metrics, RelearnConfig("all", 1, 1e-3)) == {"forget_x_relearned": "min"}
    assert sweep_relearn.directions(metrics, RelearnConfig(3, 1, 1e-3)) == {"forget_x_relearned": "min",
                                                                             "forget_x_heldout": "min"}
    assert sweep_relearn.directions(metrics, None) == {}


def _nll(model, examples) -> float:
    batch = toy_collate(examples)
    with torch.no_grad():
        return float(losses.nll(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                batch["labels"]))


def test_relearning_fits_the_chosen_examples_from_fresh_moments_at_its_own_rate():
    model = toy_model(seed=1)
    examples = toy_examples(6, seed=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.5)
    engine = PlainEngine(model, optimizer, accumulation_steps=2, max_grad_norm=1.0)
    engine.backward(_loss(model, examples))
    engine.step()
    engine.step()  # an update of the "unlearning" run: moments and a rate of its own
    assert optimizer.state
    relearn.reset_optimizer(type("Wrapper", (), {"optimizer": optimizer})(), 0.05)
    assert not optimizer.state and optimizer.param_groups[0]["lr"] == 0.05
    before = _nll(model, examples)
    state = relearn.relearn(engine, examples, toy_collate, RelearnConfig("all", 12, 0.05), micro_batch=2)
    assert state.step == 12 and engine.global_steps == 13 and not model.training
    assert _nll(model, examples) < 0.5 * before


def _loss(model, examples):
    batch = toy_collate(examples)
    return losses.nll(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                      batch["labels"])


def _relearned_sweep(root, *, held: int):
    """A result tree whose target and trials recorded the selection's forget metric after relearning."""
    import json

    from helpers.report_sweeps import DEFAULT_TRIALS, FORGET, make_sweep

    after = FORGET + "_relearned"
    trials = [dict(t, values={after: 0.2 + 100 * t["lr"], f"{after}_stderr": 0.01}) for t in DEFAULT_TRIALS]
    target = {"role": "target", after: 0.97, f"{after}_stderr": 0.02, "relearn_examples": 28, "relearn_steps": 8,
              "relearn_lr": 0.003, "relearn_heldout_groups": held}
    if held:
        target[FORGET + "_heldout"] = 0.93
    sweep = make_sweep(root, trials=trials, references=[target, {"role": "oracle"}])
    record = json.loads((sweep / "reference_rows.json").read_text())
    record["directions"].update({after: "min", FORGET + "_heldout": "min"})
    (sweep / "reference_rows.json").write_text(json.dumps(record))
    return sweep


def test_the_report_shows_each_method_s_forget_metric_before_and_after_relearning_beside_the_target_s(tmp_path):
    import reports
    from helpers.report_sweeps import FORGET, make_sweep
    from reports import html, summary
    from reports import relearn as report_relearn

    df = reports.load(_relearned_sweep(tmp_path / "a", held=2))
    table = report_relearn.table(df)
    assert list(table["who"]) == ["target", "undial", "unilogit"]
    target = table.iloc[0]
    assert target[FORGET] == 0.93 and target[FORGET + "_relearned"] == 0.97  # before: on the held-back probes
    picks = summary.select(df).set_index("method")
    for _, row in table.iloc[1:].iterrows():
        if not picks.loc[row["who"], "note"]:
            assert row[FORGET] == picks.loc[row["who"], FORGET]
            assert row[FORGET + "_relearned"] == picks.loc[row["who"], FORGET + "_relearned"]
        assert 0.2 < row[FORGET + "_relearned"] < 0.6
    page = reports.render(df)
    section = page[page.index("Robustness to relearning"):page.index("Reference models")]
    assert "28 forget example(s) for 8 step(s)" in section and "2 group(s)" in section
    assert f"{FORGET}: before" in section.replace("_<wbr>", "_") and "0.97" in section
    assert "on every forget probe" in html._relearning(reports.load(_relearned_sweep(tmp_path / "b", held=0)))
    plain = reports.load(make_sweep(tmp_path / "c"))
    assert report_relearn.table(plain).empty and html._relearning(plain) == ""
