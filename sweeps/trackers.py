"""Ray Tune's MLflow and W&B logger callbacks, fitted to a sweep's trials (``sweeps.tracking`` builds
them from the spec).

Tune's callbacks log a trial's nested config (``method/gamma``, ``run/lr``) and every number of its
results, Tune's bookkeeping included, at step = Tune's iteration. Here a trial's run carries its
hyper-parameters under their flat names (``sweeps.space.flat``) with the method's name, its epoch's
metrics (every value and its ``<metric>_stderr``, the training loss, the timings, the topology) at
step = epoch, and the sweep's ``spec.yaml`` and ``environment.json`` as artifacts. A resumed trial
goes on in its MLflow run (found by its tags ``sweep`` and ``trial_id``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import ray
from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor
from ray.air.util.node import _force_on_current_node

from unlearn.validate import is_number

# Tune's bookkeeping in a result, which no tracker needs as a metric (the epoch is the step)
NOT_METRICS = ("config", "done", "should_checkpoint", "pid", "timestamp", "trial_id", "date", "hostname", "node_ip",
               "experiment_tag", "checkpoint_dir_name", "iterations_since_restore", "epoch")


def trial_params(trial, method: str) -> dict:
    """A trial's hyper-parameters under their own names, with its method."""
    from sweeps.space import flat

    return {"method": method, **flat(trial.config)}


def metrics_of(result: dict) -> dict:
    """The numbers of one epoch's result (a flag such as ``final`` is no metric)."""
    return {k: float(v) for k, v in result.items() if k not in NOT_METRICS and is_number(v)}


def step_of(result: dict) -> int:
    return int(result.get("epoch") or result.get(TRAINING_ITERATION) or 0)


class SweepMLflow(MLflowLoggerCallback):
    """One MLflow run per trial in one experiment (every method's Tuner shares it), tagged with the
    sweep, the method and the trial id."""

    def __init__(self, tracking_uri: str, *, experiment_name: str, sweep: str, method: str, records: tuple = ()):
        super().__init__(tracking_uri, experiment_name=experiment_name, tags={"sweep": sweep, "method": method})
        self.sweep, self.method, self.records = sweep, method, tuple(records)

    def _client(self):
        return self.mlflow_util._get_client()

    def log_trial_start(self, trial) -> None:
        from mlflow.entities import Param

        if trial in self._trial_runs:
            return
        client, experiment = self._client(), self.mlflow_util.experiment_id
        found = client.search_runs([experiment], f"tags.sweep = '{self.sweep}' and tags.trial_id = '{trial.trial_id}'",
                                   max_results=1)
        if found:  # a resumed trial: its run goes on
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            tags = {**self.tags, "trial_id": trial.trial_id, "trial_name": str(trial)}
            run_id = client.create_run(experiment, run_name=str(trial), tags=tags).info.run_id
            params = [Param(k, str(v)) for k, v in trial_params(trial, self.method).items()]
            client.log_batch(run_id, params=params)
            for path in self.records:
                if Path(path).is_file():
                    client.log_artifact(run_id, path)
        self._trial_runs[trial] = run_id

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        from mlflow.entities import Metric

        if trial not in self._trial_runs:
            self.log_trial_start(trial)
        now, step = int(time.time() * 1000), step_of(result)
        metrics = [Metric(k, v, now, step) for k, v in metrics_of(result).items()]
        self._client().log_batch(self._trial_runs[trial], metrics=metrics)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        if trial not in self._trial_runs:
            return
        status = "error" if failed else (trial.last_result or {}).get("status")
        if isinstance(status, str):  # ok or diverged (reports.record.STATES)
            self._client().set_tag(self._trial_runs[trial], "status", status)
        super().log_trial_end(trial, failed)


class _RecordsActor(_WandbLoggingActor):
    """Tune's W&B logging process of one trial, which adds the sweep's records to its run as one
    artifact (the same content in every trial: W&B keeps one version) before the first result."""

    def __init__(self, *args, records: tuple = (), sweep: str = "sweep", **kwargs):
        super().__init__(*args, **kwargs)
        self._records, self._sweep = tuple(records), sweep

    def run(self):
        super().run()
        # ``wandb.finish`` returns before W&B's service has written the run's file out, and Tune kills
        # this process as soon as ``run`` returns: a trial's offline record then lacked its last
        # results. ``teardown`` waits for the service to finish every run and close its files.
        self._wandb.teardown()

    def _handle_result(self, result: dict):
        if self._records:
            artifact = self._wandb.Artifact(name=f"{self._sweep}-records", type="sweep-records")
            for path in self._records:
                if Path(path).is_file():
                    artifact.add_file(path)
            self._wandb.log_artifact(artifact)
            self._records = ()
        # Tune would add the trial's nested config to the run's config with every result
        return super()._handle_result({k: v for k, v in result.items() if k != "config"})


class SweepWandb(WandbLoggerCallback):
    """One W&B run per trial (id: the trial id), filed under the group (the sweep by default), its
    job type the method. Its files go to the trial's directory (``<trial>/wandb/``) unless
    ``WANDB_DIR`` says otherwise; the logging process sees the driver's ``WANDB_*`` variables."""

    _logger_actor_cls = _RecordsActor

    def __init__(self, *, project: str, group: str, mode: str, entity: str | None, sweep: str, method: str,
                 records: tuple = ()):
        extra = {"entity": entity} if entity else {}
        super().__init__(project=project, group=group, mode=mode, **extra)
        self.sweep, self.method, self.records = sweep, method, tuple(records)

    def setup(self, *args, **kwargs) -> None:
        if self.kwargs.get("mode") == "online":  # the API key (Tune's own setup asks for one in every mode)
            super().setup(*args, **kwargs)
        environ = {k: v for k, v in os.environ.items() if k.startswith("WANDB_")}
        self._remote_logger_class = ray.remote(num_cpus=0, **_force_on_current_node(),
                                               runtime_env={"env_vars": environ}, max_restarts=-1,
                                               max_task_retries=-1)(self._logger_actor_cls)

    def log_trial_start(self, trial) -> None:
        exclude = [*self._exclude_results, *self.excludes, "config"]
        init = dict(id=trial.trial_id, name=str(trial), resume=False, reinit=True, allow_val_change=True,
                    group=self.group, project=self.project, job_type=self.method, tags=[self.sweep, self.method],
                    config=trial_params(trial, self.method), dir=_files_dir(trial), **self.kwargs)
        self._start_logging_actor(trial, exclude, records=self.records, sweep=self.sweep, **init)


def _files_dir(trial) -> str | None:
    """Where a trial's W&B files go: ``WANDB_DIR``, else the trial's directory when the storage is a
    path (``None``, W&B's default: the trial's directory on the driver, when it is a URI)."""
    if os.environ.get("WANDB_DIR"):
        return os.environ["WANDB_DIR"]
    path = trial.path
    if not path or "://" in path:
        return None
    Path(path).mkdir(parents=True, exist_ok=True)
    return path
