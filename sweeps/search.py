"""How a sweep searches its space, beyond a grid: the objectives a searcher aims at, the searcher
(Optuna through Ray Tune), the keys the trials report them under, and who proposed each trial.

One objective (``search.objective``) is a scalar: the trial reports it as ``objective`` every epoch
and Tune (a searcher, ASHA) optimises it. Several (``search.objectives``, Optuna only) are searched
for their Pareto front at once: each is reported as ``objective_<metric>`` every epoch, Tune gets
no metric of its own and the Optuna searcher gets the list with its modes (Ray's multi-objective
``OptunaSearch``: multivariate TPE, or NSGA-II). With Optuna and neither given, the objectives are
the benchmark's first declared front pair, each toward its declared direction. An infeasible,
missing or non-finite value counts as the worst one (``sweeps.worker.objective_value``), so a
diverged trial still tells the searcher something.

Each trial records ``proposed_by`` with its hyper-parameters: ``grid``, ``random``, or the Optuna
sampler (``optuna-tpe``, ``optuna-nsga2``), marked ``(startup)`` for the sampler's first,
independently random trials (TPE's start-up trials, NSGA-II's first generation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unlearn.validate import ValidationError, check_int, fail

if TYPE_CHECKING:
    from sweeps.spec import Objective, Search, SweepSpec

SAMPLERS = ("tpe", "nsga2")
STARTUP = " (startup)"


def build_objectives(raw: list, build: Callable) -> tuple:
    """``search.objectives`` from YAML: a list of ``{metric, mode, subject_to}`` (each built by
    ``build``); ``[]``: none (the default)."""
    out = []
    for i, item in enumerate(raw):
        where = f"search.objectives[{i}]"
        if isinstance(item, dict) and item.get("mode", "max") not in ("max", "min"):
            fail(f"{where}.mode", "max or min", item.get("mode"))
        out.append(build(item, where))
    return tuple(out)


def check_search(search: Search) -> None:
    """The search fields on their own (``Search.__post_init__``); what needs the benchmark and the
    methods is checked by :func:`resolve`."""
    from sweeps.spec import Objective

    if search.sampler not in SAMPLERS:
        fail("search.sampler", f"one of {', '.join(SAMPLERS)}", search.sampler)
    check_int("search.seed", search.seed, 0)
    if not isinstance(search.objectives, (list, tuple)) or not all(isinstance(o, Objective)
                                                                   for o in search.objectives):
        fail("search.objectives", "a list of {metric: name, mode: min or max}", search.objectives)
    object.__setattr__(search, "objectives", tuple(search.objectives))
    if not search.objectives:
        return
    if search.algorithm != "optuna":
        fail("search.objectives", "given only with search.algorithm optuna (grid and random search aim at no "
             "objective; use search.objective for ASHA)", [o.metric for o in search.objectives])
    if search.objective is not None:
        fail("search.objectives", "left out when search.objective is given (one or the other)",
             [o.metric for o in search.objectives])
    metrics = [o.metric for o in search.objectives]
    if len(set(metrics)) != len(metrics):
        fail("search.objectives", "objectives on distinct metrics", metrics)


def resolve(spec: SweepSpec) -> Search:
    """``spec.search`` with its objectives settled: Optuna without any aims at the benchmark's first
    declared front pair; a list of one is that one objective (today's scalar search). Refuses what
    an Optuna search cannot run: grids (of a method's space, of seeds, of the benchmark's
    parameters), ASHA with several objectives, objectives the benchmark does not report."""
    import dataclasses

    from sweeps.spec import Objective

    search = spec.search
    if search.algorithm != "optuna":
        return search
    from sweeps.run import eval_config

    benchmark = spec.benchmark.build(spec.benchmark.variants()[0][0])
    directions = {m.name: m.direction for m in benchmark.metrics(eval_config(spec))}
    if search.objective is None and not search.objectives:
        fronts = benchmark.declared.fronts
        if not fronts:
            fail("search.objectives", f"given (the {spec.benchmark.name} benchmark declares no front pair to aim "
                 "at)", None)
        pair = (fronts[0].x, fronts[0].y)
        for name in pair:
            if directions.get(name) not in ("max", "min"):
                fail("search.objectives", f"given: the declared front's {name} is best at a target value "
                     f"({directions.get(name)!r}), which Optuna cannot aim at", None)
        search = dataclasses.replace(search, objectives=tuple(Objective(n, directions[n]) for n in pair))
    for i, objective in enumerate(search.objectives):
        if objective.metric not in directions:
            fail(f"search.objectives[{i}].metric", f"one of the {spec.benchmark.name} benchmark's metrics: "
                 f"{', '.join(sorted(directions))}", objective.metric)
    if len(search.objectives) == 1:
        search = dataclasses.replace(search, objective=search.objectives[0], objectives=())
    if search.asha and search.objectives:
        fail("search.asha", "left out with several objectives (ASHA stops trials on one scalar; give "
             "search.objective)", search.asha)
    for method in spec.methods:
        for key, value in spec.space(method).items():
            if isinstance(value, dict) and "grid" in value:
                fail(f"methods.{method}.{key}", "a value or a sampled primitive (choice, uniform, loguniform, "
                     "randint) with search.algorithm optuna, which runs no grid", value)
    if len(spec.training.seeds) > 1:
        fail("training.seeds", "one seed with search.algorithm optuna (it runs no grid; sweep seeds with grid or "
             "random search)", list(spec.training.seeds))
    if spec.benchmark.grid():
        fail("benchmark.params", "without a grid with search.algorithm optuna (it runs no grid)",
             list(spec.benchmark.grid()))
    return search


def goals(search: Search) -> tuple[Objective, ...]:
    """The objectives a trial reports: the one ``objective``, or the ``objectives``, or none."""
    return (search.objective,) if search.objective is not None else tuple(search.objectives)


def key(objective: Objective, search: Search) -> str:
    """The stable key a trial reports ``objective``'s value under every epoch."""
    return "objective" if search.objective is not None else objective_key(objective.metric)


def objective_key(metric: str) -> str:
    """The key of one of several objectives."""
    return f"objective_{metric}"


def tune_goal(search: Search) -> tuple[str | None, str | None]:
    """``(metric, mode)`` for ``tune.TuneConfig``: the scalar objective's, or none with several
    (the searcher holds them) and without any."""
    if search.objective is None:
        return None, None
    return "objective", search.objective.mode


def proposer(search: Search) -> str:
    """Who proposes a sweep's trials: ``grid``, ``random`` or ``optuna-<sampler>``."""
    return f"optuna-{search.sampler}" if search.algorithm == "optuna" else search.algorithm


def startup_trials(search: Search) -> int:
    """The sampler's independently random first trials: a quarter of the samples, between 4 and 10
    (TPE's start-up trials; NSGA-II's first generation, its population)."""
    return max(4, min(10, search.samples // 4))


def searcher(search: Search):
    """The Tune searcher of an Optuna search (``None`` otherwise), seeded by ``search.seed``."""
    if search.algorithm != "optuna":
        return None
    try:
        import optuna
    except ImportError:
        raise ValidationError("search.algorithm 'optuna' needs the optuna package (pip install optuna)") from None
    from sweeps.optuna_search import ProposingOptunaSearch

    startup = startup_trials(search)
    if search.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(population_size=startup, seed=search.seed)
    else:
        sampler = optuna.samplers.TPESampler(n_startup_trials=startup, multivariate=True, seed=search.seed)
    metric = mode = None  # one objective: Tune's own metric and mode (``tune_goal``) reach the searcher
    if search.objective is None:  # several: the searcher holds them, Tune none
        metric, mode = [key(o, search) for o in search.objectives], [o.mode for o in search.objectives]
    return ProposingOptunaSearch(metric=metric, mode=mode, sampler=sampler, proposer=proposer(search),
                                 startup=startup)


def mark_stopped(results) -> int:
    """Mark the trials the scheduler stopped early (no error, not diverged, last epoch not final:
    ASHA) with ``stopped.json`` beside their record, so that they read as ``stopped``, not as
    still running; how many."""
    import json
    from pathlib import Path

    from reports.record import DIVERGED, STOPPED_EARLY

    count = 0
    for result in results:
        metrics = result.metrics or {}
        if result.error or not result.path or not metrics or metrics.get("final") or metrics.get("status") == DIVERGED:
            continue
        path = Path(result.path)
        if path.is_dir():
            (path / STOPPED_EARLY).write_text(json.dumps({"epoch": metrics.get("epoch")}))
            count += 1
    return count
