"""YAML search primitives → Ray Tune domains, and the per-trial hyper-parameters they sample.

The param space of a method is nested (Tune resolves nested mappings): ``method`` holds the
method's own fields, ``run`` the trial keys, the seed, the benchmark's gridded parameters and the
unlearning target (``subject``), and ``lora``, when the method's space has a ``lora`` section, every
LoRA field (the defaults filled in). :func:`flat` joins them back into one mapping of names (the
LoRA fields as ``lora_r``, ``lora_alpha`` …), which the spec keeps distinct.
"""

from __future__ import annotations

from reports.record import PROPOSED_BY
from sweeps.search import proposer
from sweeps.spec import LORA, SweepSpec, method_fields


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
    """The Tune param space of one method: ``{"method": its own fields, "run": its trial keys, the
    seeds as a grid, the benchmark's gridded parameters, and its unlearning targets (``subject``)
    as a grid when it has several}``."""
    from ray import tune

    own = method_fields(method)
    space = {key: to_tune(value) for key, value in spec.space(method).items() if key != LORA}
    run = {key: value for key, value in space.items() if key not in own}
    seeds = list(spec.training.seeds)
    run["seed"] = tune.grid_search(seeds) if len(seeds) > 1 else seeds[0]
    for key, values in spec.benchmark.grid().items():
        run[key] = tune.grid_search(values)
    if subjects:
        run["subject"] = tune.grid_search(list(subjects))
    run[PROPOSED_BY] = proposer(spec.search)  # an Optuna searcher marks its own (sweeps.search)
    tuned = {"method": {key: value for key, value in space.items() if key in own}, "run": run}
    lora = lora_section(spec, method)
    if lora is not None:
        tuned[LORA] = {key: to_tune(value) for key, value in lora.items()}
    return tuned


def lora_section(spec: SweepSpec, method: str) -> dict | None:
    """A method's ``lora`` section over LoRA's defaults (values or primitives); ``None`` without one."""
    import dataclasses

    from unlearn.lora import LoraConfig

    section = spec.space(method).get(LORA)
    if section is None:
        return None
    defaults = {f.name: f.default for f in dataclasses.fields(LoraConfig)}
    return {**defaults, **section}


def flat(config: dict) -> dict:
    """A trial's sampled hyper-parameters under their own names (``run`` and ``method`` joined, the
    LoRA fields as ``lora_<field>``)."""
    lora = {f"{LORA}_{key}": value for key, value in config.get(LORA, {}).items()}
    return {**config.get("run", {}), **config.get("method", {}), **lora}


def grid_size(spec: SweepSpec, method: str) -> int:
    """Trials a grid search over this method runs (× samples for random draws)."""
    size = len(spec.training.seeds) * len(spec.benchmark.variants())
    values = [v for k, v in spec.space(method).items() if k != LORA] + list((lora_section(spec, method) or {}).values())
    for value in values:
        if isinstance(value, dict) and "grid" in value:
            size *= len(value["grid"])
    return size * spec.search.samples
