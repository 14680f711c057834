"""Relearning (``eval.relearn``) in real trials on the tiny preset: one sweep that relearns half the
forget set (gradient ascent at ZeRO-2, one epoch), then one trial of the same sweep relearning the
whole set at ZeRO-3. The session's prepared tiny models and Ray cluster are reused."""

import json
import math
from pathlib import Path

import pytest

from helpers.sweep_specs import apply, raw
from reports.record import read_rows
from sweeps import spec as specs

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FORGET = "forget_qa_rouge_l_recall"
HALF = {"examples": 14, "steps": 6, "lr": 3e-3}  # 2 of the tiny preset's 4 forget people (7 examples each)
WHOLE = {"examples": "all", "steps": 8, "lr": 3e-3}


def _spec(relearning: dict) -> specs.SweepSpec:
    return specs.from_dict(apply(raw(), {
        "name": "relearn", "methods": {"ga": {"lr": 3e-3}}, "training": {"epochs": 1},
        "eval": {"every_epoch": ["generation"], "final": ["generation"], "relearn": relearning}}))


@pytest.fixture(scope="module")
def relearned(tiny_prepared, ray_cluster, tmp_path_factory):
    from sweeps.run import run_sweep

    outcome = run_sweep(_spec(HALF), storage=str(tmp_path_factory.mktemp("relearn")), progress=lambda _: None)
    assert outcome.finished == 1 and not outcome.failed
    (trial,) = (outcome.sweep_dir / "ga").glob("run_trial_*")
    return outcome.sweep_dir, read_rows(trial)


def _data(sweep_dir: Path):
    from benchmarks.synthetic import read

    environment = json.loads((sweep_dir / "environment.json").read_text())
    return environment, read(environment["data"], chat=False)


def test_the_target_s_relearning_baseline_is_in_the_reference_rows(relearned):
    sweep_dir, _ = relearned
    record = json.loads((sweep_dir / "reference_rows.json").read_text())
    target = next(r for r in record["rows"] if r["role"] == "target")
    assert target["relearn_examples"] == 14 and target["relearn_heldout_groups"] == 2
    for suffix in ("_relearned", "_heldout"):
        assert 0 <= target[FORGET + suffix] <= 1 and record["directions"][FORGET + suffix] == "min"
    assert "oracle" in {r["role"] for r in record["rows"]} and FORGET + "_relearned" not in \
        next(r for r in record["rows"] if r["role"] == "oracle")


def test_with_part_held_back_the_metric_is_scored_on_the_held_back_probes_only(relearned):
    """The trial's record: the unlearned model's scores on all probes and, before and after
    relearning, on the held-back ones; the ``_heldout`` values are those of the saved (unlearned)
    model on the held-back people's probes."""
    import torch

    from sweeps import relearn
    from unlearn import data as collation
    from unlearn import models

    sweep_dir, rows = relearned
    final = rows[-1]
    assert final["final"] and final["zero_stage"] == 2 and final["relearn_heldout_groups"] == 2
    assert final["relearn_examples"] == 14 and final["relearn_s"] > 0
    assert all(math.isfinite(final[FORGET + s]) for s in ("", "_heldout", "_relearned"))
    spec = _spec(HALF)
    _, data = _data(sweep_dir)
    choice, heldout = relearn.split(data, spec.eval.relearn)
    assert len(heldout.probes["forget_qa"]) == len(data.probes["forget_qa"]) // 2
    (checkpoint,) = (sweep_dir / "train").glob("train-*/checkpoint_*/model")
    model, tokenizer = models.load_model(str(checkpoint))  # the trial's model is the unlearned one
    from sweeps.run import eval_config

    refs = torch.load(sweep_dir / "references.pt", weights_only=False)["{}"]["refs"]
    collate = collation.Collator(tokenizer, max_length=spec.training.max_length)
    scores = relearn.forget_scores(spec.benchmark.build(), model.eval(), tokenizer, collate, heldout, refs,
                                   eval_config(spec), spec.eval.final, "_heldout")
    assert scores[FORGET + "_heldout"] == final[FORGET + "_heldout"]
    whole = relearn.forget_scores(spec.benchmark.build(), model, tokenizer, collate, data, refs, eval_config(spec),
                                  spec.eval.final, "")
    assert whole[FORGET] == final[FORGET]  # the final metrics are the unlearned model's


def test_relearning_the_whole_forget_set_at_zero3_brings_the_forgotten_answers_back(relearned):
    """The mechanism: the same unlearning trial at ZeRO-3, relearning every forget example, ends with
    a higher forget recall after relearning than the unlearned model's."""
    from benchmarks.synthetic import read
    from sweeps.run import Cell, sweep_context
    from sweeps.spec import Scaling
    from sweeps.trial import build_trainer

    sweep_dir, _ = relearned
    spec = _spec(WHOLE)
    environment = json.loads((sweep_dir / "environment.json").read_text())
    cell = Cell({}, dict(spec.benchmark.params), spec.benchmark.build(), Path(environment["target"]),
                Path(environment["oracle"]), read(environment["data"], chat=False))
    context = sweep_context(spec, sweep_dir, [cell], sweep_dir / "references.pt", Scaling(**environment["scaling"]))
    plan = context.trial_plan("ga", {"run": {"lr": 3e-3, "seed": 0, "zero_stage": 3}})
    metrics = build_trainer(plan, "relearn-whole-zero3").fit().metrics
    assert metrics["zero_stage"] == 3 and metrics["relearn_heldout_groups"] == 0
    assert metrics["relearn_examples"] == len(cell.data.forget_examples())
    assert FORGET + "_heldout" not in metrics
    assert metrics[FORGET + "_relearned"] > metrics[FORGET], (metrics[FORGET], metrics[FORGET + "_relearned"])
