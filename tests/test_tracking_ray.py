"""A tiny sweep (``helpers/tracked.py``) that reports to MLflow (a local file store) and to W&B
(offline) besides its own files, read back with MLflow's client: one run per trial, every epoch's
metrics with their standard errors as the trial recorded them, its hyper-parameters, the sweep's
records as artifacts; and each trial's offline W&B run on disk. W&B's server is pointed at a
closed loopback port: an offline run that reached for the network could not."""

import math

import pytest
import yaml

from helpers.tracked import METHOD
from reports.record import ENVIRONMENT, SPEC, read_rows
from sweeps.trackers import metrics_of

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_every_trial_is_one_mlflow_run_with_its_epochs_params_and_records(tracked_sweep, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    client = MlflowClient(tracking_uri=tracked_sweep["uri"])
    experiment = client.get_experiment_by_name("lab")
    runs = {run.data.tags["trial_id"]: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == set(tracked_sweep["trials"]) and len(runs) == 2
    assert sorted(run.data.params["lr"] for run in runs.values()) == ["0.001", "0.003"]
    for tid, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.params == {"method": METHOD, "lr": run.data.params["lr"], "seed": "0", "proposed_by": "grid"}
        assert {run.data.tags[k] for k in ("sweep", "method", "status")} == {"tracked", METHOD, "ok"}
        rows = read_rows(tracked_sweep["trials"][tid])
        assert [row["epoch"] for row in rows] == [1, 2]
        expected = metrics_of(rows[-1])
        assert {"kl_oracle_model_forget", "kl_oracle_model_forget_stderr", "loss"} <= set(expected)
        for name in expected:
            history = client.get_metric_history(run.info.run_id, name)
            assert [m.step for m in history] == [1, 2], name
            for metric, row in zip(history, rows):
                want = float(row[name])
                assert metric.value == pytest.approx(want) or (math.isnan(want) and math.isnan(metric.value)), name
        artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
        assert artifacts == [ENVIRONMENT, SPEC], artifacts
        saved = client.download_artifacts(run.info.run_id, SPEC, str(tmp_path / tid))
        assert yaml.safe_load(open(saved)) == yaml.safe_load((tracked_sweep["dir"] / SPEC).read_text())


def test_every_trial_writes_an_offline_wandb_run_without_the_network(tracked_sweep):
    for tid, trial_dir in tracked_sweep["trials"].items():
        [run_dir] = (trial_dir / "wandb").glob(f"offline-run-*-{tid}")
        [record] = run_dir.glob(f"run-{tid}.wandb")  # what `wandb sync` uploads later
        data = record.read_bytes()
        # the run's project, its flat config, every epoch's metrics with their standard errors, and
        # the sweep's records as an artifact (W&B's offline record is a log of protobuf messages)
        for text in ("lab", tid, "lr", f'"{METHOD}"', "kl_oracle_model_forget", "kl_oracle_model_forget_stderr",
                     "tracked-records", "sweep-records", SPEC, ENVIRONMENT):
            assert text.encode() in data, text
        assert b"run/lr" not in data  # no nested config
        assert "finishing run" in (run_dir / "logs" / "debug.log").read_text()
