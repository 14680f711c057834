"""YAML search primitives → Ray Tune domains, and the per-trial hyper-parameters they sample."""

from __future__ import annotations

from sweeps.spec import SweepSpec


def to_tune(value):
    """``{grid: [...]}`` → ``tune.grid_search``; ``{choice|uniform|loguniform|randint: [...]}`` →
    the Tune domain; Tune objects and fixed values pass through."""
    from ray import tune

    if not isinstance(value, dict):
        return value
    kind, args = next(iter(value.items()))
    if kind == "grid":
        return tune.grid_search(list(args))
    if kind == "choice":
        return tune.choice(list(args))
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](*args)


def param_space(spec: SweepSpec, method: str, subjects=()) -> dict:
    """The Tune param space of one method: its hyper-parameters plus the seeds as a grid, the
    benchmark's gridded parameters, and its unlearning targets (``subject``) as a grid when it has
    several."""
    from ray import tune

    space = {key: to_tune(value) for key, value in spec.space(method).items()}
    seeds = list(spec.training.seeds)
    space["seed"] = tune.grid_search(seeds) if len(seeds) > 1 else seeds[0]
    for key, values in spec.benchmark.grid().items():
        space[key] = tune.grid_search(values)
    if subjects:
        space["subject"] = tune.grid_search(list(subjects))
    return space


def grid_size(spec: SweepSpec, method: str) -> int:
    """Trials a grid search over this method runs (× samples for random draws)."""
    size = len(spec.training.seeds) * len(spec.benchmark.variants())
    for value in spec.space(method).values():
        if isinstance(value, dict) and "grid" in value:
            size *= len(value["grid"])
    return size * spec.search.samples
