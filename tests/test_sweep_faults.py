"""Sweeps in operation: a worker killed inside a trial, a driver killed midway and resumed. Each
driver is ``unlearn sweep`` in a subprocess with its own local Ray cluster.

A worker is killed by the sweep's own test hook (``sweeps.faults``): ``UNLEARN_FAIL_AT`` names the
rank and the epoch whose end it dies at, so nothing here races a trial's end."""

import json
import os
import signal

import pytest

from sweeps import faults
from sweeps.spec import SpecError

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.parametrize("text, expected", [
    ("", None), ("rank=1,epoch=2", faults.FailAt(1, 2)), (" epoch=3 , rank=0 ", faults.FailAt(0, 3)),
])
def test_the_fault_hook_reads_its_rank_and_epoch(text, expected):
    assert faults.from_env({faults.ENV: text}) == expected
    assert faults.from_env({}) is None


@pytest.mark.parametrize("text", ["rank=1", "rank=1,epoch=x", "rank=1;epoch=2", "rank=-1,epoch=2", "rank=0,epoch=0",
                                  "rank=0,epoch=1,method=ga"])
def test_a_malformed_fault_hook_is_one_line_naming_the_variable(text):
    with pytest.raises(SpecError) as error:
        faults.from_env({faults.ENV: text})
    assert str(error.value).startswith(faults.ENV) and "\n" not in str(error.value)


def test_the_fault_hook_fires_once_per_trial_and_only_where_asked(tmp_path, monkeypatch):
    killed = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    hook = faults.FailAt(rank=1, epoch=2)
    for rank, epoch in ((0, 2), (1, 1), (1, 3)):
        hook.fire(rank, epoch, tmp_path)
    hook.fire(1, 2, None)  # outside a Tune trial there is no marker to keep: it never fires
    assert killed == [] and not (tmp_path / faults.MARKER).exists()
    waited = []
    hook.fire(1, 2, tmp_path, before=lambda: waited.append(len(killed)))
    assert waited == [0] and killed == [(os.getpid(), signal.SIGKILL)]  # it waits, then kills
    assert json.loads((tmp_path / faults.MARKER).read_text())["epoch"] == 2
    hook.fire(1, 2, tmp_path, before=lambda: waited.append(len(killed)))  # the retried worker group runs on
    assert len(killed) == 1 and waited == [0]


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
