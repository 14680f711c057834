"""The tiny sweep end to end: Ray Tune → Ray Train worker groups → DeepSpeed ZeRO (gloo), on a local
cluster bound to loopback (the session's one sweep of the tiny spec, shared with ``test_demo.py``)."""

import json
import math
from pathlib import Path

import psutil
import pytest

from reports.record import read_rows
from sweeps import spec as specs

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = Path(__file__).resolve().parents[1] / "sweeps" / "specs" / "tiny.yaml"
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def ray_listening():
    """(address, process name) of every listening socket owned by a Ray process of this machine."""
    out = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status != psutil.CONN_LISTEN or not conn.pid:
            continue
        try:
            process = psutil.Process(conn.pid)
            text = process.name() + " " + " ".join(process.cmdline())
        except psutil.Error:
            continue
        if "ray" in text:
            out.append((conn.laddr.ip, process.name()))
    return out


@pytest.fixture(scope="module")
def sweep(tiny_sweep):
    return tiny_sweep


def trial_results(sweep_dir: Path, method: str) -> dict:
    out = {}
    for trial in sorted((sweep_dir / method).glob("run_trial_*")):
        out[trial.name] = read_rows(trial)
    return out


def test_local_cluster_listens_on_loopback_only(sweep, ray_cluster):
    sockets = ray_listening()
    assert sockets, "no Ray listening sockets found"
    assert {ip for ip, _ in sockets} <= set(LOOPBACK), sockets


def test_every_trial_reports_every_epoch(sweep):
    for method, count in (("unilogit", 2), ("undial", 1)):  # the spec's learning rates
        trials = trial_results(sweep["dir"], method)
        assert len(trials) == count
        for rows in trials.values():
            assert [r["epoch"] for r in rows] == [1, 2]
            assert all(r["status"] == "ok" and r["method"] == method for r in rows)
            # where each rank ran: one node here, so every rank's is the same
            assert all(len(r["node_ids"]) == r["world_size"] == 2 and len(set(r["node_ids"])) == 1 for r in rows)
            assert all(math.isfinite(r["forget_qa_rouge_l_recall"]) and math.isfinite(r["kl_oracle_model_forget"])
                       for r in rows)
            assert "privleak" in rows[-1] and "privleak" not in rows[0]  # MIA only at the end, as the spec says
            assert rows[-1]["final"] is True


def test_trials_and_references_record_per_probe_scores_and_tune_does_not(sweep):
    """Every row of a trial's record and every reference row carries each per-probe metric's scores
    (the same number of probes everywhere, their mean the metric); Tune's own copy has none."""
    references = json.loads((sweep["dir"] / "reference_rows.json").read_text())["rows"]
    rows = references + [row for method in ("unilogit", "undial")
                         for trial in trial_results(sweep["dir"], method).values() for row in trial]
    name = "forget_qa_rouge_l_recall"
    counts = {len(row[f"{name}_probes"]) for row in rows}
    assert len(counts) == 1 and counts.pop() >= 4
    for row in rows:
        assert math.isclose(sum(row[f"{name}_probes"]) / len(row[f"{name}_probes"]), row[name], abs_tol=1e-5)
        assert "kl_oracle_model_forget_probes" not in row  # per-token values are not probes
    for result in (sweep["dir"] / "unilogit").glob("run_trial_*/result.json"):
        assert "_probes" not in result.read_text()


def test_topology_is_recorded_and_one_method_runs_zero3(sweep):
    environment = json.loads((sweep["dir"] / "environment.json").read_text())
    assert environment["scaling"]["workers"] == 2 and environment["ray"].startswith("2.60")
    stages = {}
    for method in ("unilogit", "undial"):
        for rows in trial_results(sweep["dir"], method).values():
            assert rows[-1]["world_size"] == 2 and rows[-1]["effective_batch"] == 8
            stages[method] = rows[-1]["zero_stage"]
    assert stages == {"unilogit": 3, "undial": 2}


def test_reference_rows_and_resolved_spec_are_stored_once(sweep):
    rows = json.loads((sweep["dir"] / "reference_rows.json").read_text())
    roles = {r["role"]: r for r in rows["rows"]}
    assert set(roles) == {"target", "oracle"}
    assert roles["target"]["forget_qa_rouge_l_recall"] > roles["oracle"]["forget_qa_rouge_l_recall"]
    assert rows["directions"]["privleak"] == 0.0
    assert (sweep["dir"] / "spec.yaml").is_file()
    assert sum("references computed once" in s for s in sweep["said"]) == 1


def test_only_the_last_checkpoint_is_kept_and_it_is_the_model(sweep):
    from unlearn import models

    train_dirs = sorted((sweep["dir"] / "train").glob("train-*"))
    assert len(train_dirs) == 3
    for train_dir in train_dirs:
        checkpoints = [p for p in train_dir.glob("checkpoint_*") if p.is_dir()]
        assert len(checkpoints) == 1
        assert (checkpoints[0] / "model" / "model.safetensors").is_file()
        assert not list(checkpoints[0].rglob("*optim_states*"))  # no optimizer state once a trial ends
    model, _ = models.load_model(str(checkpoints[0] / "model"))
    assert model.config.vocab_size > 100


def test_unlearning_happened(sweep):
    target = {r["role"]: r for r in json.loads((sweep["dir"] / "reference_rows.json").read_text())["rows"]}["target"]
    for method in ("unilogit", "undial"):
        best = min(rows[-1]["forget_qa_rouge_l_recall"] for rows in trial_results(sweep["dir"], method).values())
        assert best < target["forget_qa_rouge_l_recall"]


def test_batch_split_does_not_change_the_result(sweep, ray_cluster):
    """micro-batch × workers = 8: the sweep's Unilogit trial (4 per worker × 2 workers, ZeRO-3) and
    the same trial on one worker (8 × 1) end with the same losses and KL values
    (``test_loop.py`` proves the other splits in-process)."""
    from benchmarks.synthetic import read
    from sweeps.run import Cell, sweep_context
    from sweeps.spec import Scaling
    from sweeps.trial import build_trainer

    spec = specs.load(TINY)
    (trial,) = [path for path in (sweep["dir"] / "unilogit").glob("run_trial_*")
                if json.loads((path / "params.json").read_text())["lr"] == 3e-3]
    sampled = json.loads((trial / "params.json").read_text())
    two = read_rows(trial)[-1]
    environment = json.loads((sweep["dir"] / "environment.json").read_text())
    cell = Cell({}, dict(spec.benchmark.params), spec.benchmark.build(), Path(environment["target"]),
                Path(environment["oracle"]), read(environment["data"], chat=False))
    context = sweep_context(spec, sweep["dir"], [cell], sweep["dir"] / "references.pt",
                            Scaling(**environment["scaling"]))
    run = {"lr": sampled["lr"], "seed": sampled["seed"], "zero_stage": sampled["zero_stage"], "micro_batch": 8,
           "workers": 1}
    plan = context.trial_plan("unilogit", {"method": {"retain": sampled["retain"]}, "run": run})
    assert plan.run.workers == 1 and plan.paths.trial_dir is None
    one = build_trainer(plan, "split-8x1").fit().metrics
    assert one["effective_batch"] == two["effective_batch"] == 8 and one["epoch"] == two["epoch"] == 2
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for key in ("loss", "forget_loss", "retain_loss", "kl_oracle_model_forget", "kl_oracle_model_retain"):
        assert math.isclose(one[key], two[key], rel_tol=1e-4, abs_tol=1e-5), key


def test_a_trial_that_cannot_fit_fails_in_seconds(sweep, ray_cluster):
    from sweeps.run import run_sweep

    raw = specs.to_dict(specs.load(TINY))
    spec = specs.from_dict({**raw, "scaling": dict(raw["scaling"], workers=3, cpus_per_worker=1.0)})
    with pytest.raises(specs.SpecError, match="a trial needs 3.1 CPUs"):
        run_sweep(spec, storage=str(sweep["dir"].parent / "never"))
    assert not (sweep["dir"].parent / "never").exists()


def test_export_of_a_zero3_trial_reproduces_its_forget_score(sweep, tmp_path):
    import dataclasses

    import torch

    from benchmarks.common import EvalConfig
    from benchmarks.synthetic import evaluate as ev
    from benchmarks.synthetic import read
    from sweeps import cli
    from unlearn import data, models

    rows = next(iter(trial_results(sweep["dir"], "unilogit").values()))
    assert rows[-1]["zero_stage"] == 3
    trial_id = rows[-1]["trial_id"]
    out = tmp_path / "exported"
    assert cli.main(["export", str(sweep["dir"]), trial_id, "--out", str(out)]) == 0
    model, tokenizer = models.load_model(str(out))
    environment = json.loads((sweep["dir"] / "environment.json").read_text())
    spec = specs.load(TINY)
    dataset = read(environment["data"], chat=False)
    config = EvalConfig(**{k: v for k, v in dataclasses.asdict(spec.eval).items()
                           if k not in ("every_epoch", "final", "relearn")})
    refs = torch.load(sweep["dir"] / "references.pt", weights_only=False)["{}"]["refs"]
    scores = ev.evaluate(model, tokenizer, data.Collator(tokenizer, max_length=spec.training.max_length), dataset, refs,
                         config, parts=("generation", "kl"))
    assert scores["forget_qa_rouge_l_recall"] == rows[-1]["forget_qa_rouge_l_recall"]
    assert math.isclose(scores["kl_oracle_model_forget"], rows[-1]["kl_oracle_model_forget"], rel_tol=1e-5)


def test_status_lists_every_trial(sweep, capsys):
    from sweeps import cli

    assert cli.main(["status", str(sweep["dir"])]) == 0
    out = capsys.readouterr().out
    assert "3 trials" in out and out.count(" ok ") >= 3 and "unilogit" in out and "undial" in out
