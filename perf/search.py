"""Search that aims at the front: the hypervolume that grid, random and multi-objective Optuna search
reach against the number of trials, on the tiny synthetic preset.

What runs: the tiny preset's benchmark (``sweeps/specs/tiny.yaml``: its prepared target and oracle,
cached), unlearned with GD (gradient ascent on the forget set, NLL on the retain set) for 2 epochs in
a continuous space of two dimensions, ``lr`` log-uniform in [1e-4, 1e-2] and ``retain_weight``
uniform in [0, 4]. Each configuration runs the service's training loop (``unlearn.loop``) on the
plain engine in this one process, then evaluates the final model's answers (``generation``: forget
and retain QA ROUGE-L recall) — not a Ray Train + DeepSpeed worker group, whose ~15 s fixed cost
per trial would make the ~800 trials here take hours, nor a Tune trial (a fresh actor per trial
cost ~15 s on this loaded machine). The searchers are the service's own, driven one trial at a
time: the Tune space from ``sweeps.space.param_space``; grid and random configurations from Tune's
variant generator (what ``BasicVariantGenerator`` runs; random draws seeded); Optuna through
``sweeps.search.searcher`` (seeded) asked and told through Tune's ``Searcher`` interface
(``suggest`` / ``on_trial_complete``), both objectives at once: multivariate TPE (the default) and
NSGA-II.

Objectives: ``forget_qa_rouge_l_recall`` (min) and ``retain_qa_rouge_l_recall`` (max), the
benchmark's declared front pair. Hypervolume (``reports.pareto.hypervolume_curve``) against the
reference point forget = 1, retain = 0 (the worst values both can take, so it lies in [0, 1]).

Each repeat r (0, 1, 2) trains with seed r and seeds its searcher with r; the dense grid (10 × 10 =
100 trials) runs at every seed and is the repeat's 100 %. Grid (8 learning rates × 5 retain
weights), random and Optuna get the same budget, 40 trials (40 % of the dense grid). Target: 95 %
of the dense grid's hypervolume within the budget.

    PYTHONPATH=. .venv/bin/python perf/search.py                  # 28 min on a busy 2-core machine
    PYTHONPATH=. .venv/bin/python perf/search.py --figure-only    # the figure again from the JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import record  # noqa: E402  (perf/record.py, beside this file)

OBJECTIVES = {"forget_qa_rouge_l_recall": "min", "retain_qa_rouge_l_recall": "max"}
REFERENCE = (1.0, 0.0)
LR = (1e-4, 1e-2)
RETAIN_WEIGHT = (0.0, 4.0)
EPOCHS = 2
ALGORITHMS = ("grid", "random", "optuna", "optuna-nsga2")
OUT = ROOT / "perf" / "results" / "search.json"
FIGURE = ROOT / "docs" / "figures" / "search-hypervolume.svg"


def grid_values(shape: tuple[int, int]) -> dict:
    """``shape[0]`` log-spaced learning rates × ``shape[1]`` evenly spaced retain weights, ends included."""
    low, high = (math.log10(v) for v in LR)
    lrs = [float(f"{10 ** (low + (high - low) * i / (shape[0] - 1)):.4g}") for i in range(shape[0])]
    weights = [round(RETAIN_WEIGHT[0] + (RETAIN_WEIGHT[1] - RETAIN_WEIGHT[0]) * i / (shape[1] - 1), 4)
               for i in range(shape[1])]
    return {"lr": lrs, "retain_weight": weights}


def grid_shape(budget: int) -> tuple[int, int]:
    """The grid of at most ``budget`` points that uses most of it, the squarest among those (more
    learning rates than retain weights)."""
    short = max(range(2, math.isqrt(budget) + 1), key=lambda a: (a * (budget // a), a))
    return budget // short, short


def spec_for(algorithm: str, budget: int, seed: int, shape: tuple = (2, 2)):
    """The tiny preset's spec with GD's two-dimensional space, searched by ``algorithm``."""
    from sweeps import spec as specs

    raw = specs.to_dict(specs.load(ROOT / "sweeps" / "specs" / "tiny.yaml"))
    if algorithm == "grid":
        values = grid_values(shape)
        space = {"lr": {"grid": values["lr"]}, "retain_weight": {"grid": values["retain_weight"]}}
        search = {"algorithm": "grid", "samples": 1}
    else:
        space = {"lr": {"loguniform": list(LR)}, "retain_weight": {"uniform": list(RETAIN_WEIGHT)}}
        search = {"algorithm": algorithm, "samples": budget, "seed": seed}
        if algorithm == "random":
            search["objective"] = {"metric": "retain_qa_rouge_l_recall", "mode": "max"}  # not used: nothing aims
    raw.update(name=f"search-{algorithm}", methods={"gd": dict(space, retain="nll")}, search=search,
               training=dict(raw["training"], epochs=EPOCHS, seeds=[seed]))
    raw["search"] = search
    return specs.from_dict({k: v for k, v in raw.items()})


def setup():
    """The tiny preset's prepared target and oracle (cached), its data and references."""
    from benchmarks.prepare import Recipe, prepare
    from sweeps.run import eval_config
    from unlearn import data as collation
    from unlearn import models

    spec = spec_for("grid", 0, 0)
    benchmark = spec.benchmark.build()
    prepared = prepare(spec.model.base, benchmark, Recipe(**spec.model.prepare), progress=lambda m: None)
    config = eval_config(spec)
    target, tokenizer = models.load_model(str(prepared.target))
    oracle, _ = models.load_model(str(prepared.oracle))
    collate = collation.Collator(tokenizer, max_length=spec.training.max_length, chat_template=prepared.data.chat)
    refs = benchmark.references(target.eval(), oracle.eval(), tokenizer, collate, prepared.data, config)
    return {"target": str(prepared.target), "data": str(prepared.data.root), "refs": refs, "config": config,
            "max_length": spec.training.max_length, "micro_batch": spec.training.micro_batch,
            "baseline": {k: refs.baseline[k] for k in OBJECTIVES}}


def evaluate(config: dict, context: dict, objectives: tuple) -> dict:
    """One configuration (Tune's nested config): GD on the plain engine in this process, then the
    final model's answers; its two metrics and the values the searcher reads."""
    import torch

    from benchmarks import get
    from benchmarks.synthetic import read
    from sweeps.search import objective_key
    from sweeps.space import flat
    from sweeps.worker import objective_value
    from unlearn import data as collation
    from unlearn import loop, methods, models
    from unlearn.engine import PlainEngine

    sampled = flat(config)
    model, tokenizer = models.load_model(context["target"])
    dataset = read(context["data"], chat=False)
    collate = collation.Collator(tokenizer, max_length=context["max_length"], chat_template=dataset.chat)
    method = methods.make("gd", dict(config["method"]))
    loop.set_seed(sampled["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=sampled["lr"])
    engine = PlainEngine(model, optimizer, max_grad_norm=1.0)
    began, status = time.time(), "ok"
    try:
        loop.run(engine, method, loop.with_index(dataset.forget_examples()), dataset.retain_examples(), collate,
                 loop.LoopConfig(epochs=EPOCHS, micro_batch=context["micro_batch"], seed=sampled["seed"]))
        benchmark = get("synthetic", **context["params"])
        scores = benchmark.evaluate(model.eval(), tokenizer, collate, dataset, context["refs"], context["config"],
                                    ("generation",))
    except loop.Diverged:
        status, scores = "diverged", {}
    metrics = {name: scores.get(name, math.nan) for name in OBJECTIVES}
    for objective in objectives:
        metrics[objective_key(objective.metric)] = objective_value(metrics, objective)
    return dict(metrics, status=status, seconds=round(time.time() - began, 3))


def configurations(algorithm: str, spec, seed: int):
    """The configurations grid and random search run, as Tune's variant generator resolves them
    (``BasicVariantGenerator``'s own): every grid point, or ``samples`` seeded draws."""
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    from sweeps import space

    param_space = space.param_space(spec, "gd")
    state = np.random.RandomState(seed)
    for _ in range(spec.search.samples):
        for _, config in generate_variants(param_space, random_state=state):
            yield config


def run_search(algorithm: str, budget: int, seed: int, context: dict, shape: tuple = (2, 2)) -> list[dict]:
    """The trials of one search in order: sampled values, objectives, proposer. Optuna: the
    service's searcher (``sweeps.search.searcher``) asked and told through Tune's ``Searcher``
    interface, one trial at a time."""
    from ray.tune.utils.util import merge_dicts

    from sweeps import search, space

    spec = spec_for(algorithm.split("-")[0], budget, seed, shape)
    if algorithm == "optuna-nsga2":
        spec = dataclasses.replace(spec, search=dataclasses.replace(spec.search, sampler="nsga2"))
    rows = []

    def record(config, metrics):
        sampled = space.flat(config)
        rows.append({"lr": sampled["lr"], "retain_weight": sampled["retain_weight"],
                     "proposed_by": sampled.get("proposed_by"), **metrics})

    if not algorithm.startswith("optuna"):
        for config in configurations(algorithm, spec, seed):
            record(config, evaluate(config, context, ()))
        return rows
    objectives = search.goals(spec.search)
    searcher = search.searcher(spec.search)
    param_space = space.param_space(spec, "gd")
    searcher.set_search_properties(None, None, param_space)
    for number in range(spec.search.samples):
        trial_id = f"t{number}"
        config = merge_dicts(param_space, searcher.suggest(trial_id))
        metrics = evaluate(config, context, objectives)
        searcher.on_trial_complete(trial_id, metrics)
        record(config, metrics)
    return rows


def curve(rows: list[dict]) -> list[float]:
    """The hypervolume of the first n trials' front, n = 1 … len(rows)."""
    from reports.pareto import hypervolume_curve

    return hypervolume_curve([[r[name] for name in OBJECTIVES] for r in rows], OBJECTIVES, REFERENCE)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--dense", type=int, default=10, help="levels per dimension of the dense grid")
    parser.add_argument("--figure-only", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.figure_only:
        import json

        figure(json.loads(args.out.read_text()))
        return 0
    import torch

    torch.set_num_threads(1)
    began = time.time()
    shape = grid_shape(args.budget)
    context = setup()
    context["params"] = dict(spec_for("grid", 0, 0).benchmark.params)
    repeats = []
    for seed in range(args.repeats):
        repeat = {"seed": seed}
        t = time.time()
        repeat["dense"] = run_search("grid", 0, seed, context, (args.dense, args.dense))
        repeat["dense_hypervolume"] = curve(repeat["dense"])[-1]
        print(f"seed {seed}: dense grid {len(repeat['dense'])} trials, hypervolume "
              f"{repeat['dense_hypervolume']:.4f} ({time.time() - t:.0f}s)", flush=True)
        for algorithm in ALGORITHMS:
            t = time.time()
            rows = run_search(algorithm, args.budget, seed, context, shape)
            volumes = curve(rows)
            repeat[algorithm] = {"trials": rows, "hypervolume": volumes,
                                 "share": [v / repeat["dense_hypervolume"] for v in volumes]}
            print(f"seed {seed}: {algorithm} {len(rows)} trials, hypervolume {volumes[-1]:.4f} = "
                  f"{volumes[-1] / repeat['dense_hypervolume']:.1%} of the dense grid ({time.time() - t:.0f}s)",
                  flush=True)
        repeats.append(repeat)
    result = {"what": "hypervolume (forget_qa_rouge_l_recall min, retain_qa_rouge_l_recall max; reference "
                      "forget 1, retain 0) against trials: grid, random and multi-objective Optuna (TPE) search, "
                      "GD on the tiny synthetic preset, lr log-uniform [1e-4, 1e-2] x retain_weight [0, 4], "
                      f"{EPOCHS} epochs, each trial the training loop in-process (plain engine), the searchers driven "
                      "one trial at a time",
              "budget": args.budget, "grid": f"{shape[0]} lr x {shape[1]} retain_weight",
              "dense_grid": f"{args.dense} x {args.dense}",
              "budget_share_of_dense": args.budget / args.dense ** 2, "target": 0.95, "baseline": context["baseline"],
              "repeats": repeats, "summary": summarise(repeats, args.budget), "seconds": round(time.time() - began, 1),
              "machine": record.machine()}
    record.write(result, args.out)
    for line in describe(result):
        print(line)
    figure(result)
    return 0


def summarise(repeats: list[dict], budget: int) -> dict:
    """Per algorithm: the share of the dense grid's hypervolume at the budget (each repeat, mean) and
    the trials each repeat needed to reach 95 % (None: not within the budget)."""
    out = {}
    for algorithm in ALGORITHMS:
        shares = [r[algorithm]["share"][-1] for r in repeats]
        reached = [next((i + 1 for i, s in enumerate(r[algorithm]["share"]) if s >= 0.95), None) for r in repeats]
        out[algorithm] = {"share_at_budget": [round(s, 4) for s in shares],
                          "mean_share_at_budget": round(statistics.mean(shares), 4),
                          "trials_to_95": reached,
                          "met": all(n is not None and n <= budget for n in reached)}
    return out


def describe(result: dict) -> list[str]:
    lines = [f"budget {result['budget']} trials ({result['budget_share_of_dense']:.0%} of the dense grid "
             f"{result['dense_grid']}); {result['seconds'] / 60:.1f} min"]
    for algorithm, s in result["summary"].items():
        lines.append(f"{algorithm}: {', '.join(f'{v:.1%}' for v in s['share_at_budget'])} of the dense grid's "
                     f"hypervolume (mean {s['mean_share_at_budget']:.1%}); trials to 95 %: {s['trials_to_95']}")
    return lines


def figure(result: dict) -> Path:
    """The hypervolume share against trials, one line per algorithm and repeat (``reports.svg``)."""
    from reports.svg import curves_svg

    curves = {algorithm: [r[algorithm]["share"] for r in result["repeats"]] for algorithm in ALGORITHMS}
    labels = {"grid": f"grid ({result['grid']})", "random": "random", "optuna": "Optuna TPE (2 objectives)",
              "optuna-nsga2": "Optuna NSGA-II"}
    svg = curves_svg({labels[a]: c for a, c in curves.items()}, x_label="trials",
                     y_label="hypervolume / dense grid's", title="Hypervolume reached against trials (3 repeats)",
                     hlines={f"{result['target']:.0%}": result["target"]})
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    FIGURE.write_text(svg + "\n")
    print(f"wrote {FIGURE}")
    return FIGURE


if __name__ == "__main__":
    raise SystemExit(main())
