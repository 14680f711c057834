"""Sweeps in operation: a worker killed inside a trial, a driver killed midway and resumed. Each
driver is ``unlearn sweep`` in a subprocess with its own local Ray cluster.

A worker is killed by the sweep's own test hook (``sweeps.faults``): ``UNLEARN_FAIL_AT`` names the
rank and the epoch whose end it dies at, so nothing here races a trial's end."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from reports.record import read_rows
from sweeps import faults
from sweeps.spec import SpecError

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "sweeps" / "specs" / "tiny.yaml"


def micro_spec(tmp_path: Path, name: str, methods: dict, epochs: int = 2) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    raw.update(name=name, methods=methods, training=dict(raw["training"], epochs=epochs),
               eval={"every_epoch": ["kl"], "final": ["kl", "generation"], "max_new_tokens": 8},
               failure={"max_retries": 2})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def start(spec: Path, storage: Path, *extra: str, fail_at: str | None = None) -> subprocess.Popen:
    log = open(storage / f"driver-{int(time.time() * 1000)}.log", "w")
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    if fail_at:
        env[faults.ENV] = fail_at
    return subprocess.Popen([sys.executable, "-m", "sweeps.cli", "sweep", str(spec), "--storage", str(storage), *extra],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def results(sweep_dir: Path, method: str) -> dict:
    out = {}
    for trial in sorted((sweep_dir / method).glob("run_trial_*")):
        out[trial.name] = read_rows(trial)
    return out


def wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (its local Ray cluster included)."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    os.killpg(process.pid, signal.SIGKILL)
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    process.wait(timeout=30)


def record_lines(trial_dir: Path) -> list[dict]:
    """Every line of a trial's own record, as written (a re-run epoch would appear twice)."""
    return [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


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


def finished(sweep_dir: Path, method: str) -> list[str]:
    return [name for name, rows in results(sweep_dir, method).items() if rows and rows[-1].get("final")]


def test_killed_worker_and_killed_driver(tmp_path, unlearn_cache):
    """Rank 0 of each trial dies when its second epoch ends, before that epoch's checkpoint (once
    the first epoch's is registered): Ray Train starts the worker group again from the first
    epoch's checkpoint, and the trial records every epoch once. Once the first trial has finished,
    the driver is killed with its Ray cluster; a rerun without ``--resume`` is refused and touches
    nothing; ``--resume`` finishes the sweep and runs no finished trial again."""
    spec = micro_spec(tmp_path, "faults", {"unilogit": {"lr": {"grid": [1.0e-3, 2.0e-3]}, "retain": "nll"}})
    sweep_dir = tmp_path / "faults"
    driver = start(spec, tmp_path, fail_at="rank=0,epoch=2")
    try:
        (first,) = wait_for(lambda: finished(sweep_dir, "unilogit"), 900, "a finished Unilogit trial")
    finally:
        kill_tree(driver)
    killed = sweep_dir / "unilogit" / first
    assert json.loads((killed / faults.MARKER).read_text())["epoch"] == 2  # it fired, once
    lines = record_lines(killed)
    assert [r["epoch"] for r in lines] == [1, 2]  # every epoch once
    assert [r["start_epoch"] for r in lines] == [0, 1]  # resumed from epoch 1's checkpoint
    assert lines[-1]["status"] == "ok" and lines[-1]["final"] is True

    records = sorted(sweep_dir.glob("*/run_trial_*/metrics.jsonl"))
    before = {path: path.read_text() for path in records}
    again = start(spec, tmp_path)
    assert again.wait(timeout=600) != 0  # without --resume the results are not touched
    assert {path: path.read_text() for path in records} == before
    resumed = start(spec, tmp_path, "--resume")
    try:
        assert resumed.wait(timeout=900) == 0
    finally:
        if resumed.poll() is None:
            kill_tree(resumed)
    final = results(sweep_dir, "unilogit")
    assert len(final) == 2 and all(rows[-1]["status"] == "ok" and [r["epoch"] for r in rows] == [1, 2]
                                   for rows in final.values())
    assert (killed / "metrics.jsonl").read_text() == before[killed / "metrics.jsonl"]  # not run again
