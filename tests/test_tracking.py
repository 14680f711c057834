"""The spec's ``tracking`` section without Ray: its one-line errors, the missing-package line, the
MLflow pre-flight, and the MLflow callback driven as Tune drives it (a trial's start, its epochs'
results, its end; then a resumed trial) into a local file store, read back with MLflow's client."""

import math

import pytest
import yaml

from helpers import sweep_specs
from sweeps import spec as specs
from sweeps import tracking

BAD = [
    ({"comet": {}}, "tracking.comet must be one of mlflow, wandb (unknown key); got 'comet'"),
    ({"mlflow": {}}, "tracking.mlflow.uri must be given; got None"),
    ({"mlflow": {"uri": ""}}, "tracking.mlflow.uri must be a tracking URI"),
    ({"mlflow": {"uri": "sqlite:///m.db", "name": "x"}},
     "tracking.mlflow.name must be one of uri, experiment (unknown key); got 'name'"),
    ({"mlflow": {"uri": "sqlite:///m.db", "experiment": 3}}, "tracking.mlflow.experiment must be an experiment name"),
    ({"mlflow": "sqlite:///m.db"}, "tracking.mlflow must be a mapping with keys among uri, experiment"),
    ({"wandb": {"mode": "offline"}}, "tracking.wandb.project must be given; got None"),
    ({"wandb": {"project": "lab", "mode": "off"}},
     "tracking.wandb.mode must be one of online, offline, disabled; got 'off'"),
    ({"wandb": {"project": "lab", "api_key": "k"}}, "tracking.wandb.api_key must be one of project, mode, entity"),
    ([], "tracking must be a mapping; got []"),
]


def with_tracking(section) -> dict:
    return sweep_specs.apply(sweep_specs.raw(), {"tracking": section})


@pytest.mark.parametrize("section,message", BAD, ids=[m.split(" must")[0] for _, m in BAD])
def test_a_malformed_tracking_section_fails_in_one_line(section, message):
    with pytest.raises(specs.SpecError) as caught:
        specs.from_dict(with_tracking(section))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_package_is_named_in_one_line(monkeypatch):
    monkeypatch.setattr(tracking, "installed", lambda module: module != "wandb")
    specs.from_dict(with_tracking({"mlflow": {"uri": "sqlite:///m.db"}}))
    with pytest.raises(specs.SpecError, match=r"^tracking.wandb needs the wandb package, which is not installed: "
                                              r"pip install wandb$"):
        specs.from_dict(with_tracking({"wandb": {"project": "lab", "mode": "offline"}}))
    monkeypatch.setattr(tracking, "installed", lambda module: False)
    with pytest.raises(specs.SpecError, match="pip install mlflow-skinny$"):
        specs.from_dict(with_tracking({"mlflow": {"uri": "sqlite:///m.db"}}))


def test_the_section_round_trips_through_the_saved_spec():
    spec = specs.from_dict(with_tracking({"mlflow": {"uri": "http://127.0.0.1:5000"},
                                          "wandb": {"project": "lab", "mode": "offline"}}))
    assert spec.tracking.mlflow.experiment is None and spec.tracking.wandb.mode == "offline"
    assert spec.tracking.names() == ["mlflow", "wandb"]
    saved = yaml.safe_load(yaml.safe_dump(specs.to_dict(spec)))
    assert specs.from_dict(saved) == spec
    assert specs.from_dict(sweep_specs.raw()).tracking.names() == []  # none by default


def test_an_mlflow_store_that_cannot_open_stops_the_sweep_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    section = tracking.Tracking(mlflow=tracking.MLflow(uri=str(tmp_path / "mlruns")))
    with pytest.raises(specs.SpecError) as caught:
        tracking.preflight(section, "tiny")
    assert str(caught.value).startswith(f"tracking.mlflow.uri {str(tmp_path / 'mlruns')!r}: MLflow 3 opens a file "
                                        "store only with MLFLOW_ALLOW_FILE_STORE=true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    tracking.preflight(section, "tiny")


class FakeTrial:
    """What Tune's logger callbacks read of a trial."""

    def __init__(self, trial_id: str, config: dict, path):
        self.trial_id, self.config, self.path, self.local_path = trial_id, config, str(path), str(path)
        self.last_result = {}

    def __str__(self):
        return f"run_trial_{self.trial_id}"


def epoch_result(epoch: int, lr: float) -> dict:
    """A result as Tune hands it to a callback: our metrics beside Tune's bookkeeping."""
    return {"epoch": epoch, "forget_qa_rouge_l_recall": 0.5 / epoch, "forget_qa_rouge_l_recall_stderr": 0.05,
            "kl_oracle_forget": float("nan"), "kl_oracle_forget_stderr": float("nan"), "loss": lr * epoch,
            "status": "ok", "final": epoch == 2, "method": "undial", "training_iteration": epoch,
            "config": {"run": {"lr": lr}}, "trial_id": "x", "done": False, "timestamp": 1}


def test_the_mlflow_callback_logs_a_run_per_trial_with_flat_params_epochs_and_records(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from sweeps.trackers import SweepMLflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    records = [tmp_path / "spec.yaml", tmp_path / "environment.json"]
    records[0].write_text("name: tiny\n")
    records[1].write_text("{}\n")
    config = {"method": {"gamma": 10}, "run": {"lr": 1e-3, "seed": 0}, "lora": {"r": 8}}
    trial = FakeTrial("abc12_00000", config, tmp_path / "trial")

    def drive(epochs, callback=None):
        callback = callback or SweepMLflow(uri, experiment_name="lab", sweep="tiny", method="undial",
                                           records=tuple(map(str, records)))
        callback.setup()
        callback.log_trial_start(trial)
        for epoch in epochs:
            trial.last_result = epoch_result(epoch, 1e-3)
            callback.log_trial_result(epoch, trial, trial.last_result)
        callback.log_trial_end(trial)

    drive([1])
    drive([2])  # resumed: a new callback (restored from Tune's state) goes on in the same run
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("lab")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run_trial_abc12_00000"
    assert run.data.params == {"method": "undial", "lr": "0.001", "seed": "0", "gamma": "10", "lora_r": "8"}
    assert {k: run.data.tags[k] for k in ("sweep", "method", "trial_id", "status")} == {
        "sweep": "tiny", "method": "undial", "trial_id": "abc12_00000", "status": "ok"}
    assert set(run.data.metrics) == {"forget_qa_rouge_l_recall", "forget_qa_rouge_l_recall_stderr", "kl_oracle_forget",
                                     "kl_oracle_forget_stderr", "loss", "training_iteration"}
    history = client.get_metric_history(run.info.run_id, "forget_qa_rouge_l_recall")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "forget_qa_rouge_l_recall_stderr")] == [1, 2]
    assert all(math.isnan(m.value) for m in client.get_metric_history(run.info.run_id, "kl_oracle_forget_stderr"))
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["environment.json", "spec.yaml"]


def test_callbacks_follow_the_section_and_default_to_the_sweeps_name(tmp_path):
    from sweeps.trackers import SweepMLflow, SweepWandb

    assert tracking.callbacks(tracking.Tracking(), "tiny", "ga", tmp_path) == []
    section = tracking.Tracking(mlflow=tracking.MLflow(uri="sqlite:///m.db"),
                                wandb=tracking.Wandb(project="lab", mode="offline", group="g"))
    mlflow, wandb = tracking.callbacks(section, "tiny", "ga", tmp_path)
    assert isinstance(mlflow, SweepMLflow) and mlflow.experiment_name == "tiny" and mlflow.method == "ga"
    assert mlflow.records == (str(tmp_path / "spec.yaml"), str(tmp_path / "environment.json"))
    assert isinstance(wandb, SweepWandb) and wandb.project == "lab" and wandb.group == "g"
    assert wandb.kwargs == {"mode": "offline"}


def test_an_online_wandb_run_without_an_api_key_stops_the_sweep_in_one_line(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_SETUP_API_KEY_HOOK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # no `wandb login` either
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    online = tracking.Tracking(wandb=tracking.Wandb(project="lab"))
    with pytest.raises(specs.SpecError, match=r"^tracking.wandb.mode online needs a W&B API key: set WANDB_API_KEY "
                                              r"or run `wandb login`, or use mode offline$"):
        tracking.preflight(online, "tiny")
    tracking.preflight(tracking.Tracking(wandb=tracking.Wandb(project="lab", mode="offline")), "tiny")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    tracking.preflight(online, "tiny")


def test_a_trial_function_returns_only_once_tune_has_its_last_result(monkeypatch):
    """A tracker slows the driver down; a trial function that returned before the trial's actor had
    taken its worker group's last result hung the sweep (``sweeps.patches.hand_over_last_result``)."""
    import queue as local

    from ray.train._internal import session as train_session

    from sweeps import patches

    class Remote:  # the one-item queue Train's TuneReportCallback puts each result into
        def __init__(self, polls):
            self.polls = polls

        def empty(self):
            self.polls -= 1
            return self.polls < 0

    class Session:
        def __init__(self, polls):
            self._inter_actor_queue, self.result_queue = Remote(polls), local.Queue(1)

    waiting = Session(polls=2)
    monkeypatch.setattr(train_session, "get_session", lambda: waiting)
    assert patches.hand_over_last_result(version="2.60.0") and waiting._inter_actor_queue.polls < 0
    assert not patches.hand_over_last_result(version="2.61.0")  # where it was not checked
    monkeypatch.setattr(train_session, "get_session", lambda: type("NoQueue", (), {})())
    assert not patches.hand_over_last_result(version="2.60.0")  # no TuneReportCallback


def test_a_wandb_logging_process_ends_only_once_its_offline_record_holds_every_result(tmp_path, monkeypatch):
    """Tune kills a trial's W&B logging process as soon as its ``run`` returns; ``wandb.finish``
    returns before W&B's service has written the run out (a loaded machine lost a trial's last
    results that way), so ``run`` returns only once the service has ended."""
    import queue

    import psutil
    from ray.air.integrations.wandb import _QueueItem

    from sweeps.trackers import _RecordsActor

    for name in ("CACHE", "CONFIG", "DATA"):
        monkeypatch.setenv(f"WANDB_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    results = queue.Queue()
    for epoch in (1, 2):
        results.put((_QueueItem.RESULT, {"training_iteration": epoch, f"forget_score_epoch_{epoch}": 0.5 / epoch}))
    results.put((_QueueItem.END, None))
    actor = _RecordsActor(str(tmp_path), results, [], [], id="trial_1", project="lab", mode="offline",
                          dir=str(tmp_path), config={"lr": 0.1})
    actor.run()
    assert not [child for child in psutil.Process().children()  # W&B's service (started by this process) has ended
                if child.status() != psutil.STATUS_ZOMBIE and "wandb" in " ".join(child.cmdline())]
    [record] = tmp_path.glob("wandb/offline-run-*-trial_1/run-trial_1.wandb")
    data = record.read_bytes()
    assert b"forget_score_epoch_1" in data and b"forget_score_epoch_2" in data
