"""`ray job submit` against a `ray start --head` bound to 127.0.0.1 runs a sweep spec to completion."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from reports.record import read_rows

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def submit(dashboard: int, env: dict, *args: str) -> subprocess.CompletedProcess:
    """``ray job submit``, once the head's job agent has registered (``ray start`` returns before
    it does; until then the head answers that no agent is available and accepts nothing)."""
    for _ in range(60):
        job = subprocess.run([RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", *args],
                             env=env, capture_output=True, text=True, timeout=900)
        if "No available agent to submit job" not in job.stderr:
            return job
        time.sleep(1)
    return job


def test_ray_job_submit_runs_a_sweep(tmp_path, unlearn_cache):
    raw = yaml.safe_load((ROOT / "sweeps" / "specs" / "tiny.yaml").read_text())
    raw.update(name="job", methods={"unilogit": {"lr": 1.0e-3, "retain": "nll"}},
               eval={"every_epoch": ["kl"], "final": ["kl", "generation"], "max_new_tokens": 8})
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
    dashboard = free_port()
    subprocess.run([RAY, "start", "--head", "--num-cpus=2", "--node-ip-address=127.0.0.1", f"--port={free_port()}",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--disable-usage-stats",
                    f"--temp-dir={tempfile.mkdtemp(prefix='rayjob', dir='/tmp')}"],
                   check=True, env=env, capture_output=True, timeout=120)
    try:
        job = submit(dashboard, env, "--working-dir", str(ROOT), "--", sys.executable, "-m", "sweeps.cli", "sweep",
                     str(spec), "--storage", str(tmp_path / "runs"))
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout
    (trial,) = (tmp_path / "runs" / "job" / "unilogit").glob("run_trial_*")
    rows = read_rows(trial)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["status"] == "ok"
