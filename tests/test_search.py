"""Search that aims at the front, without a cluster: the spec's objectives (by default the declared
front pair), the one-line refusals, the seeded Optuna searcher that stays inside the declared space
and marks what it proposed, the values a trial reports for it, the hypervolume reached after each
trial, and the report's ``proposed_by`` column."""

import itertools
import math

import numpy as np
import pytest

from helpers import sweep_specs
from helpers.report_sweeps import DEFAULT_TRIALS, FORGET, RETAIN, make_sweep
from reports.pareto import hypervolume, hypervolume_curve
from sweeps import search, space
from sweeps import spec as specs

LR, WEIGHT = (1e-4, 1e-2), (0.0, 4.0)


def optuna_spec(**search_fields) -> specs.SweepSpec:
    raw = sweep_specs.raw()
    raw["methods"] = {"gd": {"lr": {"loguniform": list(LR)}, "retain_weight": {"uniform": list(WEIGHT)},
                             "retain": "nll"}}
    raw["search"] = {"algorithm": "optuna", "samples": 12, **search_fields}
    return specs.from_dict(raw)


def test_objectives_default_to_the_declared_front_pair_toward_its_directions():
    spec = optuna_spec()
    assert [(o.metric, o.mode) for o in spec.search.objectives] == [(FORGET, "min"), (RETAIN, "max")]
    assert spec.search.objective is None and search.tune_goal(spec.search) == (None, None)
    assert [search.key(o, spec.search) for o in spec.search.objectives] == [f"objective_{FORGET}",
                                                                            f"objective_{RETAIN}"]
    again = specs.from_dict(specs.to_dict(spec))  # the resolved spec reads back the same (resume compares them)
    assert again.search == spec.search


def test_one_objective_keeps_the_scalar_search():
    spec = optuna_spec(objectives=[{"metric": RETAIN, "mode": "max"}])
    assert spec.search.objectives == () and spec.search.objective.metric == RETAIN
    assert search.tune_goal(spec.search) == ("objective", "max")
    assert search.key(spec.search.objective, spec.search) == "objective"


@pytest.mark.parametrize("change, message", [
    ({"sampler": "cmaes"}, "search.sampler must be one of tpe, nsga2; got 'cmaes'"),
    ({"seed": -1}, "search.seed must be an integer >= 0"),
    ({"objectives": {"metric": FORGET}}, "search.objectives must be a list of {metric: name, mode: min or max}"),
    ({"objectives": [{"metric": FORGET, "mode": "up"}]}, "search.objectives[0].mode must be max or min; got 'up'"),
    ({"objectives": [{"metric": "forget_rouge", "mode": "min"}, {"metric": RETAIN}]},
     "search.objectives[0].metric must be one of the synthetic benchmark's metrics: "),
    ({"objectives": [{"metric": FORGET, "mode": "min"}, {"metric": FORGET, "mode": "max"}]},
     "search.objectives must be objectives on distinct metrics"),
    ({"objectives": [{"metric": FORGET}], "objective": {"metric": RETAIN}},
     "search.objectives must be left out when search.objective is given"),
    ({"algorithm": "random", "objectives": [{"metric": FORGET}]},
     "search.objectives must be given only with search.algorithm optuna"),
    ({"asha": {"grace_period": 1}, "objectives": [{"metric": FORGET, "mode": "min"}, {"metric": RETAIN}]},
     "search.asha must be left out with several objectives"),
])
def test_a_bad_search_fails_in_one_line_naming_the_field(change, message):
    with pytest.raises(specs.SpecError) as error:
        optuna_spec(**change)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("change, message", [
    ({"methods": {"gd": {"lr": {"grid": [1e-3, 3e-3]}}}}, "methods.gd.lr must be a value or a sampled primitive"),
    ({"training": {"seeds": [0, 1]}}, "training.seeds must be one seed with search.algorithm optuna"),
    ({"benchmark": {"params": {"people": {"grid": [20, 24]}}}}, "benchmark.params must be without a grid"),
])
def test_optuna_refuses_what_it_cannot_run(change, message):
    raw = sweep_specs.apply(sweep_specs.raw(), change)
    if "methods" not in change:
        raw["methods"] = {"gd": {"lr": {"loguniform": list(LR)}}}
    raw["search"] = {"algorithm": "optuna", "samples": 4}
    with pytest.raises(specs.SpecError, match=message):
        specs.from_dict(raw)


def drive(spec, outcome, trials: int) -> list[dict]:
    """Ask the spec's searcher for ``trials`` configurations through Tune's Searcher interface, telling
    it ``outcome(config)`` after each (as Tune does, one trial at a time); the merged configs."""
    from ray.tune.utils.util import merge_dicts

    searcher = search.searcher(spec.search)
    param_space = space.param_space(spec, "gd")
    searcher.set_search_properties(None, None, param_space)
    configs = []
    for number in range(trials):
        config = merge_dicts(param_space, searcher.suggest(str(number)))
        searcher.on_trial_complete(str(number), outcome(config))
        configs.append(config)
    return configs


def toy(config: dict) -> dict:
    """Two conflicting objectives of (lr, retain_weight): more forgetting costs retain."""
    lr, weight = config["run"]["lr"], config["method"]["retain_weight"]
    strength = (math.log10(lr) + 4) / 2  # 0 … 1 over the space
    return {f"objective_{FORGET}": 1 - strength, f"objective_{RETAIN}": 1 - strength ** 2 / (1 + weight)}


@pytest.mark.parametrize("sampler", search.SAMPLERS)
def test_the_searcher_stays_inside_the_declared_space_marks_its_proposals_and_is_seeded(sampler):
    spec = optuna_spec(sampler=sampler, seed=3)
    configs = drive(spec, toy, 12)
    for config in configs:
        assert LR[0] <= config["run"]["lr"] <= LR[1] and WEIGHT[0] <= config["method"]["retain_weight"] <= WEIGHT[1]
        assert config["method"]["retain"] == "nll" and config["run"]["seed"] == 0
    startup = search.startup_trials(spec.search)
    marks = [c["run"]["proposed_by"] for c in configs]
    assert marks == [f"optuna-{sampler} (startup)"] * startup + [f"optuna-{sampler}"] * (12 - startup)
    again = drive(optuna_spec(sampler=sampler, seed=3), toy, 12)
    assert [space.flat(c) for c in again] == [space.flat(c) for c in configs]
    other = drive(optuna_spec(sampler=sampler, seed=4), toy, 12)
    assert [space.flat(c) for c in other] != [space.flat(c) for c in configs]


def test_grid_and_random_trials_say_who_proposed_them():
    raw = sweep_specs.raw()
    assert space.param_space(specs.from_dict(raw), "undial")["run"]["proposed_by"] == "grid"
    raw["search"] = {"algorithm": "random", "samples": 2, "objective": {"metric": RETAIN}}
    assert space.param_space(specs.from_dict(raw), "undial")["run"]["proposed_by"] == "random"


def test_every_objective_has_a_value_even_when_infeasible_missing_or_diverged():
    from sweeps.spec import Objective
    from sweeps.worker import objective_values

    class Plan:
        objective = None
        objectives = (Objective(FORGET, "min"), Objective(RETAIN, "max", {"utility_qa_rouge_l_recall": {"min": 0.5}}))

    values = objective_values({FORGET: 0.25, RETAIN: 0.75, "utility_qa_rouge_l_recall": 0.9}, Plan)
    assert values == {f"objective_{FORGET}": 0.25, f"objective_{RETAIN}": 0.75}
    values = objective_values({FORGET: float("nan"), RETAIN: 0.75, "utility_qa_rouge_l_recall": 0.1}, Plan)
    assert values == {f"objective_{FORGET}": 1e6, f"objective_{RETAIN}": -1e6}  # the worst for each mode
    assert objective_values({"status": "diverged"}, Plan) == {f"objective_{FORGET}": 1e6, f"objective_{RETAIN}": -1e6}


def brute_force_area(points, reference, step: float) -> float:
    """The area dominated by 2-D minimisation points up to ``reference``, counted on a grid of cells."""
    xs = np.arange(min(p[0] for p in points), reference[0], step) + step / 2
    ys = np.arange(min(p[1] for p in points), reference[1], step) + step / 2
    cells = sum(any(x >= p[0] and y >= p[1] for p in points) for x, y in itertools.product(xs, ys))
    return cells * step * step


def test_hypervolume_after_each_trial_matches_counting_cells():
    rng = np.random.default_rng(7)
    forget = rng.integers(0, 20, 30) / 20  # on a 0.05 lattice: counting cells of 0.05 is exact
    retain = rng.integers(0, 20, 30) / 20
    points = np.column_stack([forget, retain])
    objectives = {FORGET: "min", RETAIN: "max"}
    curve = hypervolume_curve(points, objectives, (1.0, 0.0))
    assert len(curve) == 30 and all(b >= a for a, b in zip(curve, curve[1:]))
    for n in (1, 5, 17, 30):
        scores = [(f, -r) for f, r in points[:n]]  # retain maximised: its negative minimised
        assert curve[n - 1] == pytest.approx(brute_force_area(scores, (1.0, 0.0), 0.05))
        assert curve[n - 1] == pytest.approx(hypervolume(points[:n], objectives, (1.0, 0.0)))


def test_hypervolume_curve_skips_nan_and_points_outside_the_reference():
    objectives = {FORGET: "min", RETAIN: "max"}
    curve = hypervolume_curve([[np.nan, 0.5], [1.2, 0.9], [0.5, 0.5], [0.6, 0.4], [0.25, 0.5]], objectives, (1, 0))
    assert curve == pytest.approx([0, 0, 0.25, 0.25, 0.375])
    assert hypervolume_curve([], objectives, (1, 0)) == []


def test_the_report_marks_which_trials_the_searcher_proposed(tmp_path):
    from reports import html
    from reports.results import load

    marks = ["optuna-tpe (startup)", "optuna-tpe"]
    trials = [dict(t, proposed_by=marks[i % 2]) for i, t in enumerate(DEFAULT_TRIALS)]
    sweep = make_sweep(tmp_path, trials=trials)
    df = load(sweep)
    assert "proposed_by" in df and "proposed_by" not in df.attrs["hyperparameters"]
    assert set(df.loc[df["role"] == "trial", "proposed_by"]) == set(marks)
    page = html.render(df)
    assert "proposed_<wbr>by</th>" in page and "<td>optuna-tpe (startup)</td>" in page
    assert "Configurations proposed by: optuna-tpe 5, optuna-tpe (startup) 5" in page


def test_a_trial_the_scheduler_stopped_reads_as_stopped(tmp_path):
    from reports.record import STOPPED, STOPPED_EARLY, trials

    sweep = make_sweep(tmp_path)
    running = next(t for t in trials(sweep) if t.state == "running")
    (running.path / STOPPED_EARLY).write_text('{"epoch": 1}')
    assert next(t for t in trials(sweep) if t.path == running.path).state == STOPPED


def test_curves_figure_is_deterministic_and_escaped():
    from reports.svg import curves_svg

    curves = {"grid <5>": [[0.1, 0.5, 0.9]], "optuna": [[0.2, 0.8], [0.4, 0.9, 0.95]]}
    first = curves_svg(curves, x_label="trials", y_label="share", title="a & b", hlines={"95 %": 0.95})
    assert first == curves_svg(curves, x_label="trials", y_label="share", title="a & b", hlines={"95 %": 0.95})
    assert "grid &lt;5&gt;" in first and "a &amp; b" in first and first.count("<polyline") == 5
    assert "nothing to plot" in curves_svg({}, x_label="x", y_label="y", title="t")
