"""One Tune trial: a function trial that runs a Ray Train ``TorchTrainer`` worker group (the
Ray 2.60 pattern; ``Tuner(TorchTrainer)`` is not supported by Train V2)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def build_trainer(cfg: dict, name: str, callbacks=()):
    """The worker group of one trial: ``workers`` DeepSpeed ranks, gloo on CPU, nccl on GPU; Ray
    keeps only the latest checkpoint."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from sweeps.worker import settings, train_loop

    scaling = cfg["scaling"]
    per_worker = {"CPU": scaling["cpus_per_worker"]}
    if scaling["use_gpu"]:
        per_worker["GPU"] = scaling["gpus_per_worker"]
    return TorchTrainer(
        train_loop,
        train_loop_config=cfg,
        scaling_config=ScalingConfig(num_workers=settings(cfg)["workers"], use_gpu=scaling["use_gpu"],
                                     resources_per_worker=per_worker),
        torch_config=TorchConfig(backend="nccl" if scaling["use_gpu"] else "gloo"),
        run_config=RunConfig(name=name, storage_path=cfg["train_storage"], callbacks=list(callbacks),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=cfg.get("max_retries", 0))),
    )


RECORD = "metrics.jsonl"  # our own per-trial record, one line per epoch, beside Tune's result.json
TIMING = "timing.json"  # when the trial function started and ended


def finished(record: Path) -> bool:
    """Whether a trial's record ends with its final epoch (finished or diverged)."""
    if not record.is_file():
        return False
    lines = [line for line in record.read_text().splitlines() if line.strip()]
    try:
        return bool(lines) and bool(json.loads(lines[-1]).get("final"))
    except json.JSONDecodeError:
        return False


def run_trial(config: dict, context: dict) -> None:
    """Tune may restore a trial that had in fact finished (its state is saved periodically) and
    then truncates its ``result.json``; our record says it finished, so it is not run again."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial = tune.get_context()
    trial_dir = Path(context["sweep_dir"]) / context["method"] / Path(trial.get_trial_dir()).name
    if finished(trial_dir / RECORD):
        return
    started = time.time()
    cfg = dict(context, hp=config, trial_id=trial.get_trial_id(), record=str(trial_dir / RECORD),
               trial_started=started)
    build_trainer(cfg, f"train-{trial.get_trial_id()}", [TuneReportCallback()]).fit()
    # The trial's own start and end, for its fixed cost (bench/trial_cost.py): worker-group start,
    # loading and teardown are what is left of this span after training, evaluation and checkpoints.
    (trial_dir / TIMING).write_text(json.dumps({"started": started, "ended": time.time()}))
