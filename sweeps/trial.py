"""One Tune trial: a function trial that builds one typed :class:`TrialPlan` from the hyper-parameters
Tune sampled and runs a Ray Train ``TorchTrainer`` worker group with it (the Ray 2.60 pattern;
``Tuner(TorchTrainer)`` is not supported by Train V2).

The spec is parsed once, in the driver (``sweeps.spec``). What every trial of a sweep shares
travels to the trial as a :class:`Sweep`; what one trial runs travels to its workers as a
:class:`TrialPlan`, whose ``method`` is the method's config instance (``unlearn.methods.make``)
and ``lora`` its LoRA config (``unlearn.lora.make``; ``None``: every weight trains). Both are
frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.record import TIMING, TRAIN, read_rows, train_name
from sweeps.spec import (
    EvalSpec,
    Failure,
    Objective,
    RunSettings,
    Scaling,
    SweepSpec,
    Training,
    variant_key,
)


@dataclass(frozen=True)
class GridPoint:
    """One grid point of the benchmark's parameters as a trial sees it: the benchmark, its target
    model and data, and the key of its references in ``references.pt`` (with the unlearning
    target, ``subject``, when the benchmark has several)."""

    benchmark: str
    params: dict  # every parameter of this grid point's benchmark
    model_dir: str
    data_root: str
    refs_key: str
    subject: str | None = None

    def __post_init__(self):
        for name in ("benchmark", "model_dir", "data_root", "refs_key"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"point.{name} must be a non-empty string; got {getattr(self, name)!r}")
        if not isinstance(self.params, dict):
            raise TypeError(f"point.params must be a mapping; got {self.params!r}")

    def build(self):
        """The benchmark of this grid point."""
        import benchmarks

        return benchmarks.get(self.benchmark, **self.params)


@dataclass(frozen=True)
class TrialPaths:
    """Where a trial reads and writes: the references, Ray Train's storage, and Tune's trial
    directory (the record, the timings, the fault hook's marker; ``None`` outside a Tune trial)."""

    refs: str
    train_storage: str
    trial_dir: str | None = None

    def in_trial(self, name: str) -> Path | None:
        return Path(self.trial_dir) / name if self.trial_dir else None


@dataclass(frozen=True)
class TrialPlan:
    """Everything the workers of one trial run. ``run`` holds the trial keys resolved over the
    spec's defaults: read epochs, micro-batch, accumulation, workers and ZeRO stage there, not in
    ``training`` or ``scaling`` (which give the schedule, warm-up, length, clipping, devices)."""

    method: Any  # unlearn.methods.MethodConfig, the one instance every worker trains with
    run: RunSettings
    point: GridPoint
    eval: EvalSpec  # the parts evaluated every epoch and at the final one
    evaluation: Any  # benchmarks.common.EvalConfig: how they are evaluated
    training: Training
    scaling: Scaling  # cpus_per_worker resolved (sweeps.cluster.bundles)
    failure: Failure
    objective: Objective | None
    paths: TrialPaths
    trial_id: str | None = None
    started: float | None = None  # when the trial function started
    lora: Any = None  # unlearn.lora.LoraConfig: train LoRA adapters only; None: every weight
    objectives: tuple = ()  # (Objective, ...): several searched at once, each reported every epoch

    def __post_init__(self):
        from benchmarks.common import EvalConfig
        from unlearn.lora import LoraConfig
        from unlearn.methods import MethodConfig

        kinds = {"method": MethodConfig, "run": RunSettings, "evaluation": EvalConfig, "point": GridPoint,
                 "eval": EvalSpec, "training": Training, "scaling": Scaling, "failure": Failure, "paths": TrialPaths}
        for name, kind in kinds.items():
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"plan.{name} must be a {kind.__name__}; got {type(getattr(self, name)).__name__}")
        if self.lora is not None and not isinstance(self.lora, LoraConfig):
            raise TypeError(f"plan.lora must be a LoraConfig or None; got {type(self.lora).__name__}")
        if self.scaling.cpus_per_worker is None:
            raise ValueError("plan.scaling.cpus_per_worker must be resolved (sweeps.cluster.bundles); got None")


@dataclass(frozen=True)
class Sweep:
    """What every trial of a sweep shares: the spec, the resolved scaling, each grid point of the
    benchmark (by ``variant_key`` of its label), the unlearning targets, and where the references
    and results are."""

    spec: SweepSpec
    scaling: Scaling
    points: dict  # variant_key(label) -> GridPoint
    subjects: tuple
    refs: str
    sweep_dir: str

    def trial_plan(self, method: str, config: dict, *, trial_id: str | None = None, trial_dir: str | None = None,
             started: float | None = None) -> TrialPlan:
        """The plan of one trial of ``method`` from Tune's nested ``config``: ``{"method": the
        method's own fields, "run": trial keys, seed, gridded benchmark parameters, subject,
        "lora": the LoRA fields (only with a lora section)}``."""
        from sweeps.run import eval_config
        from unlearn import lora, methods

        sampled = dict(config.get("run", {}))
        scaling = self.scaling
        return TrialPlan(
            method=methods.make(method, dict(config.get("method", {}))), run=RunSettings.of(self.spec, sampled),
            point=self.point(sampled), eval=self.spec.eval,
            evaluation=eval_config(self.spec),
            training=self.spec.training, scaling=scaling, failure=self.spec.failure,
            objective=self.spec.search.objective,
            paths=TrialPaths(refs=self.refs, train_storage=str(Path(self.sweep_dir) / TRAIN), trial_dir=trial_dir),
            trial_id=trial_id, started=started, lora=lora.make(config.get("lora")),
            objectives=self.spec.search.objectives)

    def point(self, sampled: dict) -> GridPoint:
        """The grid point a trial's sampled values pick, with its unlearning target."""
        label = {name: sampled[name] for name in self.spec.benchmark.grid()}
        point = self.points[variant_key(label)]
        if not self.subjects:
            return point
        subject = sampled["subject"]
        return dataclasses.replace(point, subject=subject, refs_key=variant_key({**label, "subject": subject}))


def build_trainer(plan: TrialPlan, name: str, callbacks=()):
    """The worker group of one trial: ``plan.run.workers`` DeepSpeed ranks, gloo on CPU, nccl on
    GPU; Ray keeps only the latest checkpoint. Ray Train records its train-loop config as a
    mapping, so the plan travels in one: ``{"plan": plan}``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    from sweeps.patches import torch_config, torch_trainer
    from sweeps.worker import train_loop

    scaling = plan.scaling
    per_worker = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        per_worker["GPU"] = scaling.gpus_per_worker
    return torch_trainer()(
        train_loop,
        train_loop_config={"plan": plan},
        scaling_config=ScalingConfig(num_workers=plan.run.workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker=per_worker),
        torch_config=torch_config("nccl" if scaling.use_gpu else "gloo"),
        run_config=RunConfig(name=name, storage_path=plan.paths.train_storage, callbacks=list(callbacks),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=plan.failure.max_retries)),
    )


def finished(trial_dir: Path) -> bool:
    """Whether a trial's record ends with its final epoch (finished or diverged)."""
    rows = read_rows(trial_dir)
    return bool(rows) and bool(rows[-1].get("final"))


def run_trial(config: dict, sweep: Sweep, method: str) -> None:
    """Tune may restore a trial that had in fact finished (its state is saved periodically) and
    then truncates its ``result.json``; our record says it finished, so it is not run again."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from sweeps import patches

    trial = tune.get_context()
    trial_dir = Path(sweep.sweep_dir) / method / Path(trial.get_trial_dir()).name
    if finished(trial_dir):
        return
    started = time.time()
    plan = sweep.trial_plan(method, config, trial_id=trial.get_trial_id(), trial_dir=str(trial_dir), started=started)
    build_trainer(plan, train_name(trial.get_trial_id()), [TuneReportCallback()]).fit()
    patches.hand_over_last_result()  # Tune has every result before the trial function returns
    # The trial's own start and end, for its fixed cost (perf/sweep.py): worker-group start,
    # loading and teardown are what is left of this span after training, evaluation and checkpoints.
    (trial_dir / TIMING).write_text(json.dumps({"started": started, "ended": time.time()}))
