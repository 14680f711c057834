"""Sweeps in operation: a worker killed inside a trial, a driver killed midway and resumed. Each
driver is ``unlearn sweep`` in a subprocess with its own local Ray cluster.

A worker is killed by the sweep's own test hook (``sweeps.faults``): ``UNLEARN_FAIL_AT`` names the
rank and the epoch whose end it dies at, so nothing here races a trial's end. The scenario's trials
train LoRA adapters at ZeRO-3: its killed trial resumes from adapters-only checkpoints, and its
export is the merged model."""

import json
import signal
from pathlib import Path

import pytest

from sweeps import faults
from sweeps.spec import SpecError

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.parametrize("text, expected", [
    ("", None), ("rank=1,epoch=2", faults.FailAt(1, 2)), (" epoch=3 , rank=0 ", faults.FailAt(0, 3)),
    ("rank=0,epoch=2,kill=node", faults.FailAt(0, 2, "node")), ("kill=worker,rank=1,epoch=1", faults.FailAt(1, 1)),
])
def test_the_fault_hook_reads_its_rank_and_epoch(text, expected):
    assert faults.from_env({faults.ENV: text}) == expected
    assert faults.from_env({}) is None


@pytest.mark.parametrize("text", ["rank=1", "rank=1,epoch=x", "rank=1;epoch=2", "rank=-1,epoch=2", "rank=0,epoch=0",
                                  "rank=0,epoch=1,method=ga", "rank=0,epoch=1,kill=rack", "rank=0,epoch=1,kill="])
def test_a_malformed_fault_hook_is_one_line_naming_the_variable(text):
    with pytest.raises(SpecError) as error:
        faults.from_env({faults.ENV: text})
    assert str(error.value).startswith(faults.ENV) and "\n" not in str(error.value)


def test_the_fault_hook_fires_once_per_trial_and_only_where_asked(tmp_path, monkeypatch):
    killed = []
    monkeypatch.setattr(faults, "_die", killed.append)  # this module's, not the process-wide os.kill
    hook = faults.FailAt(rank=1, epoch=2)
    for rank, epoch in ((0, 2), (1, 1), (1, 3)):
        hook.fire(rank, epoch, tmp_path)
    hook.fire(1, 2, None)  # outside a Tune trial there is no marker to keep: it never fires
    assert killed == [] and not (tmp_path / faults.MARKER).exists()
    waited = []
    hook.fire(1, 2, tmp_path, before=lambda: waited.append(len(killed)))
    assert waited == [0] and killed == [0]  # it waits for the checkpoint, then dies at once
    assert json.loads((tmp_path / faults.MARKER).read_text())["epoch"] == 2
    hook.fire(1, 2, tmp_path, before=lambda: waited.append(len(killed)))  # the retried worker group runs on
    assert len(killed) == 1 and waited == [0]


def test_the_node_hook_names_its_node_once_per_sweep_and_waits_to_die_with_it(tmp_path, monkeypatch):
    """With ``kill=node`` the chosen rank writes the sweep's marker (its trial and its node) and
    waits to be killed with that node; alone, it dies by itself after the wait. Only the first
    trial to get there fires; a later one, and the trial's restarted worker group, run on."""
    killed = []
    monkeypatch.setattr(faults, "_die", killed.append)  # not the process-wide sleep and kill: other threads
    hook = faults.FailAt(rank=0, epoch=2, kill="node")
    first, second = tmp_path / "ga" / "run_trial_a", tmp_path / "ga" / "run_trial_b"
    node = lambda: {"node_id": "abc", "node_ip": "127.0.0.1"}  # noqa: E731
    hook.fire(1, 2, first, node=node)
    hook.fire(0, 1, first, node=node)
    assert killed == [] and not (tmp_path / faults.NODE_MARKER).exists()
    hook.fire(0, 2, first, node=node)
    marker = json.loads((tmp_path / faults.NODE_MARKER).read_text())
    assert (marker["trial"], marker["node_id"], marker["node_ip"], marker["epoch"]) == ("ga/run_trial_a", "abc",
                                                                                       "127.0.0.1", 2)
    assert killed == [faults.NODE_WAIT_S]  # it waits to go down with its node, then dies by itself
    for trial in (second, first):  # another trial of the sweep, then the restarted group: no more
        hook.fire(0, 2, trial, node=node)
    assert len(killed) == 1 and not (first / faults.MARKER).exists()


def test_killed_worker_and_killed_driver(fault_scenario):
    """Rank 0 of each trial dies when its second epoch ends, before that epoch's checkpoint (once
    the first epoch's is registered): Ray Train starts the worker group again from the first
    epoch's checkpoint, and the trial records every epoch once. Once the first trial has finished,
    the driver is killed with its Ray cluster; a rerun without ``--resume`` is refused and touches
    nothing; ``--resume`` finishes the sweep and runs no finished trial again. The scenario runs
    from the session's start (``helpers/fault_scenario.py``); this checks what each step left."""
    seen = fault_scenario
    (first,) = seen["finished_when_killed"]
    killed = seen["sweep_dir"] / "unilogit" / first
    assert json.loads((killed / faults.MARKER).read_text())["epoch"] == 2  # it fired, once
    lines = [json.loads(line) for line in seen["records_when_killed"][killed / "metrics.jsonl"].splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]  # every epoch once
    assert [r["start_epoch"] for r in lines] == [0, 1]  # resumed from epoch 1's checkpoint
    assert lines[-1]["status"] == "ok" and lines[-1]["final"] is True

    assert seen["rerun_exit"] != 0  # without --resume the results are not touched
    assert seen["records_after_rerun"] == seen["records_when_killed"]
    assert seen["resume_exit"] == 0
    final = seen["results"]
    assert len(final) == 2 and all(rows[-1]["status"] == "ok" and [r["epoch"] for r in rows] == [1, 2]
                                   for rows in final.values())
    after = seen["records_after_resume"]
    assert after[killed / "metrics.jsonl"] == seen["records_when_killed"][killed / "metrics.jsonl"]  # not run again


def test_a_lora_zero3_trial_exports_the_merged_model_it_evaluated(fault_scenario, tmp_path):
    """The scenario's trials train LoRA adapters at ZeRO-3. The killed trial resumed from a
    checkpoint of its adapters (and their optimizer state) only; its final checkpoint is its
    adapters; ``unlearn export`` merges them into the base model, a plain model directory that
    ``load_model`` reads without peft and that scores what the trial reported at its final epoch
    (evaluated there on the adapted model, rank 0's gathered copy)."""
    import dataclasses
    import math

    import torch

    from benchmarks.common import EvalConfig
    from benchmarks.synthetic import evaluate as ev
    from benchmarks.synthetic import read
    from reports.record import Trial
    from sweeps import cli
    from sweeps import spec as specs
    from unlearn import data, lora, models

    seen = fault_scenario
    (first,) = seen["finished_when_killed"]
    trial = Trial.read(seen["sweep_dir"] / "unilogit" / first)
    final = trial.last
    assert final["final"] and final["zero_stage"] == 3 and final["start_epoch"] == 1
    assert trial.params["lora_r"] == 4 and trial.params["lora_target_modules"] == ["q_proj", "k_proj", "v_proj",
                                                                                   "o_proj"]
    adapter = trial.model_dir
    assert adapter.name == "adapter" and not (adapter.parent / "model").exists()
    environment = json.loads((seen["sweep_dir"] / "environment.json").read_text())
    assert lora.base_of(adapter) == environment["target"]
    hidden, layers = 64, 2  # the tiny preset: 4 heads of 16, as many KV heads
    adapters = layers * 4 * 4 * (hidden + hidden)  # r 4 on q, k, v, o: (in + out)·r each
    assert {r["trainable_params"] for rows in seen["results"].values() for r in rows} == {adapters}
    weights = (adapter / "adapter_model.safetensors").stat().st_size
    assert 4 * final["trainable_params"] <= weights < 4 * final["trainable_params"] + 16384  # the adapters only
    assert weights * 10 < sum(p.stat().st_size for p in Path(environment["target"]).glob("*.safetensors"))

    out = tmp_path / "exported"
    assert cli.main(["export", str(seen["sweep_dir"]), final["trial_id"], "--out", str(out)]) == 0
    assert not (out / lora.ADAPTER_CONFIG).exists()
    model, tokenizer = models.load_model(str(out))
    assert not lora.is_lora(model) and not any("lora" in name for name in model.state_dict())
    spec = specs.load(seen["spec"])
    dataset = read(environment["data"], chat=False)
    config = EvalConfig(**{k: v for k, v in dataclasses.asdict(spec.eval).items()
                           if k not in ("every_epoch", "final", "relearn")})
    refs = torch.load(seen["sweep_dir"] / "references.pt", weights_only=False)["{}"]["refs"]
    scores = ev.evaluate(model, tokenizer, data.Collator(tokenizer, max_length=spec.training.max_length), dataset, refs,
                         config, parts=tuple(spec.eval.final))
    assert scores["forget_qa_rouge_l_recall"] == final["forget_qa_rouge_l_recall"]
    for key in ("kl_oracle_model_forget", "kl_oracle_model_retain"):
        assert math.isclose(scores[key], final[key], rel_tol=1e-4), key


def test_the_hook_dies_by_sigkill_after_its_wait(monkeypatch):
    """``_die`` replaces this module's ``time`` and ``os`` only (not the process-wide functions)."""
    from types import SimpleNamespace

    calls = []
    monkeypatch.setattr(faults, "time", SimpleNamespace(sleep=lambda s: calls.append(("sleep", s))))
    monkeypatch.setattr(faults, "os", SimpleNamespace(getpid=lambda: 7, kill=lambda pid, sig: calls.append((pid, sig))))
    faults._die(0)
    faults._die(3)
    assert calls == [(7, signal.SIGKILL), ("sleep", 3), (7, signal.SIGKILL)]
