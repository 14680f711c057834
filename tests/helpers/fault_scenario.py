"""The sweep that ``test_sweep_faults.py`` checks, driven as a user would: ``unlearn sweep`` in a
subprocess with its own local Ray cluster, a worker killed by the sweep's own test hook
(``UNLEARN_FAIL_AT``), the driver killed once the first trial has finished, a rerun without
``--resume``, then ``--resume``. :func:`run` returns what each step left on disk. Its trials train
LoRA adapters at ZeRO-3, so the killed one resumes from a checkpoint that holds the adapters only,
and its final checkpoint is what ``unlearn export`` merges (``test_sweep_faults.py`` checks both)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from helpers.background import kill_tree
from reports.record import Trial, read_rows
from sweeps import faults

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "sweeps" / "specs" / "tiny.yaml"
FAIL_AT = "rank=0,epoch=2"
LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def micro_spec(where: Path, name: str, methods: dict, epochs: int = 2) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    raw.update(name=name, methods=methods, training=dict(raw["training"], epochs=epochs),
               eval={"every_epoch": ["kl"], "final": ["kl", "generation"], "max_new_tokens": 8},
               failure={"max_retries": 2})
    path = where / f"{name}.yaml"
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
    return {trial.name: read_rows(trial) for trial in sorted((sweep_dir / method).glob("run_trial_*"))}


def finished(sweep_dir: Path, method: str) -> list[str]:
    """Trials whose final row is written and whose final checkpoint (the model) is in storage: Ray
    persists the checkpoint after the row, so a driver killed in between would leave no model."""
    return [name for name, rows in results(sweep_dir, method).items()
            if rows and rows[-1].get("final") and Trial.read(sweep_dir / method / name).model_dir is not None]


def wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def record_lines(trial_dir: Path) -> list[dict]:
    """Every line of a trial's own record, as written (a re-run epoch would appear twice)."""
    return [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def records(sweep_dir: Path) -> dict:
    return {path: path.read_text() for path in sorted(sweep_dir.glob("*/run_trial_*/metrics.jsonl"))}


def run(storage: Path, started=lambda process: None) -> dict:
    """Unilogit with LoRA at two learning rates, ZeRO-3, 2 epochs, 2 workers; every step's outcome."""
    spec = micro_spec(storage, "faults", {"unilogit": {"lr": {"grid": [1.0e-3, 2.0e-3]}, "retain": "nll",
                                                       "zero_stage": 3, "lora": LORA}})
    sweep_dir = storage / "faults"
    seen = {"sweep_dir": sweep_dir}
    driver = start(spec, storage, fail_at=FAIL_AT)
    started(driver)
    try:
        seen["finished_when_killed"] = wait_for(lambda: finished(sweep_dir, "unilogit"), 900, "a finished trial")
    finally:
        kill_tree(driver)
    seen["records_when_killed"] = records(sweep_dir)
    again = start(spec, storage)
    started(again)
    seen["rerun_exit"] = again.wait(timeout=600)
    seen["records_after_rerun"] = records(sweep_dir)
    resumed = start(spec, storage, "--resume")
    started(resumed)
    try:
        seen["resume_exit"] = resumed.wait(timeout=900)
    finally:
        if resumed.poll() is None:
            kill_tree(resumed)
    seen["records_after_resume"] = records(sweep_dir)
    seen["results"] = results(sweep_dir, "unilogit")
    seen["spec"] = spec
    return seen
