"""One Tune trial: a function trial that runs a Ray Train ``TorchTrainer`` worker group (the
Ray 2.60 pattern; ``Tuner(TorchTrainer)`` is not supported by Train V2)."""

from __future__ import annotations


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


def run_trial(config: dict, context: dict) -> None:
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    cfg = dict(context, hp=config)  # sampled hyper-parameters kept apart from the context
    trial_id = tune.get_context().get_trial_id()
    build_trainer(cfg, f"train-{trial_id}", [TuneReportCallback()]).fit()
