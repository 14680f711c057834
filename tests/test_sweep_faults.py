"""Sweeps in operation: a diverging trial, a worker killed inside a trial, a driver killed midway
and resumed. Each drives ``unlearn sweep`` in a subprocess with its own local Ray cluster."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from sweeps.results import read_rows

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


def start(spec: Path, storage: Path, *extra: str) -> subprocess.Popen:
    log = open(storage / f"driver-{int(time.time() * 1000)}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "sweeps.cli", "sweep", str(spec), "--storage", str(storage), *extra],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy())


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


def train_workers(driver: subprocess.Popen) -> list:
    """The driver's live Ray Train worker processes, the newest first (the running trial's)."""
    found = []
    for proc in psutil.Process(driver.pid).children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return sorted(found, key=lambda p: p.create_time(), reverse=True)


def test_diverged_trial_and_killed_worker(tmp_path, unlearn_cache):
    spec = micro_spec(tmp_path, "faults", {
        # At ZeRO stage 0 an overflowing gradient is clipped to NaN (stages 1-3 would skip the step).
        "ga": {"lr": 3.0e-3, "retain": "nll", "zero_stage": 0, "forget_weight": {"grid": [1.0, 1.0e300]}},
        "unilogit": {"lr": 1.0e-3, "retain": "nll", "epochs": 20},  # long enough to be caught running
    })
    driver = start(spec, tmp_path)
    sweep_dir = tmp_path / "faults"
    try:
        def checkpoint_registered():  # rank 0 records epoch 3 only after epoch 2's report (and checkpoint)
            rows = [row for path in (sweep_dir / "unilogit").glob("run_trial_*") for row in read_rows(path)]
            return any(row.get("epoch", 0) >= 3 for row in rows) and train_workers(driver)

        victims = wait_for(checkpoint_registered, 600, "a running unilogit worker past its second epoch")
        victims[0].kill()
        assert driver.wait(timeout=600) == 0
    finally:
        if driver.poll() is None:
            kill_tree(driver)
    ga = list(results(sweep_dir, "ga").values())
    statuses = sorted(rows[-1]["status"] for rows in ga)
    assert statuses == ["diverged", "ok"]
    diverged = next(rows for rows in ga if rows[-1]["status"] == "diverged")
    assert "non-finite loss" in diverged[-1]["error"]
    ok = next(rows for rows in ga if rows[-1]["status"] == "ok")
    assert [r["epoch"] for r in ok] == [1, 2]
    (unilogit,) = results(sweep_dir, "unilogit").values()
    assert unilogit[-1]["epoch"] == 20 and unilogit[-1]["status"] == "ok"
    assert unilogit[-1]["start_epoch"] >= 1  # the retried worker group resumed from its checkpoint
    assert sorted({r["epoch"] for r in unilogit}) == list(range(1, 21))


def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path, unlearn_cache):
    spec = micro_spec(tmp_path, "resume", {"ga": {"lr": {"grid": [1.0e-3, 2.0e-3, 3.0e-3]}, "retain": "nll"}})
    sweep_dir = tmp_path / "resume"
    driver = start(spec, tmp_path)
    try:
        def one_finished():
            done = [name for name, rows in results(sweep_dir, "ga").items() if rows and rows[-1].get("final")]
            return done or None

        finished = wait_for(one_finished, 600, "a finished trial")
    finally:
        kill_tree(driver)
    before = {name: (sweep_dir / "ga" / name / "metrics.jsonl").read_text() for name in finished}
    again = start(spec, tmp_path)
    assert again.wait(timeout=600) != 0  # without --resume the results are not touched
    resumed = start(spec, tmp_path, "--resume")
    try:
        assert resumed.wait(timeout=600) == 0
    finally:
        if resumed.poll() is None:
            kill_tree(resumed)
    final = results(sweep_dir, "ga")
    assert len(final) == 3 and all(rows and rows[-1]["status"] == "ok" and rows[-1]["epoch"] == 2
                                   for rows in final.values())
    for name, text in before.items():
        assert (sweep_dir / "ga" / name / "metrics.jsonl").read_text() == text  # not run again
