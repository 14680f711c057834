"""A cluster started the way a user starts one, ``ray start --head`` bound to 127.0.0.1, and
``ray job submit`` against it. The head runs with ``--block`` in a session of its own, so that
stopping it ends its processes only, never another cluster of this machine."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.background import kill_tree

RAY = str(Path(sys.executable).parent / "ray")
AGENT_NOT_READY = "No available agent to submit job"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment() -> dict:
    """The command-line clients need ``RAY_AUTH_MODE=token`` to use the head's token. The head is
    one machine that nothing drains: no preemption watcher, as on a sweep's own local cluster."""
    return dict(os.environ, RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0",
                RAY_TRAIN_ENABLE_PREEMPTION_WATCHER="0")


@contextlib.contextmanager
def head(num_cpus: int = 2, started=lambda process: None):
    """A head node on loopback while the block runs; yields its dashboard's address. ``started``
    is given the head's process as soon as it starts."""
    dashboard = free_port()
    process = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--num-cpus={num_cpus}", "--node-ip-address=127.0.0.1",
         f"--port={free_port()}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
         "--disable-usage-stats", f"--temp-dir={tempfile.mkdtemp(prefix='rayjob', dir='/tmp')}"],
        env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    started(process)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for_dashboard(address, process)
        yield address
    finally:
        kill_tree(process)


def submit(address: str, *args: str) -> subprocess.CompletedProcess:
    """``ray job submit`` once the head's job agent has registered (until then the head answers
    that no agent is available and accepts nothing)."""
    for _ in range(120):
        job = subprocess.run([RAY, "job", "submit", "--address", address, *args], env=environment(),
                             capture_output=True, text=True, timeout=900)
        if AGENT_NOT_READY not in job.stderr:
            return job
        time.sleep(1)
    return job


def run(*args: str, started=lambda process: None) -> subprocess.CompletedProcess:
    """``ray job submit ARGS`` against a head started for it, and stopped once the job has ended."""
    with head(started=started) as address:
        return submit(address, *args)


def _wait_for_dashboard(address: str, process: subprocess.Popen) -> None:
    for _ in range(120):
        if process.poll() is not None:
            raise RuntimeError(f"ray start --head exited with {process.returncode}")
        listed = subprocess.run([RAY, "job", "list", "--address", address], env=environment(),
                                capture_output=True, text=True, timeout=120)
        if listed.returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"the head's dashboard at {address} never answered")
