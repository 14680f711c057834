"""One Tune trial: a function trial that runs a Ray Train ``TorchTrainer`` worker group (the
Ray 2.60 pattern; ``Tuner(TorchTrainer)`` is not supported by Train V2)."""

from __future__ import annotations


def run_trial(config: dict, context: dict) -> None:
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from sweeps.worker import settings, train_loop

    cfg = dict(context, hp=config)  # sampled hyper-parameters kept apart from the context
    scaling = context["scaling"]
    workers = settings(cfg)["workers"]
    per_worker = {"CPU": scaling["cpus_per_worker"]}
    if scaling["use_gpu"]:
        per_worker["GPU"] = scaling["gpus_per_worker"]
    trial_id = tune.get_context().get_trial_id()
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=cfg,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=scaling["use_gpu"],
                                     resources_per_worker=per_worker),
        torch_config=TorchConfig(backend="nccl" if scaling["use_gpu"] else "gloo"),
        run_config=RunConfig(name=f"train-{trial_id}", storage_path=context["train_storage"],
                             callbacks=[TuneReportCallback()],
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=context.get("max_retries", 0))),
    )
    trainer.fit()
