"""A cluster started the way a user starts one, ``ray start --head`` bound to 127.0.0.1, and
``ray job submit`` against it. The head runs with ``--block`` in a session of its own, so that
stopping it ends its processes only, never another cluster of this machine."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

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
        _stop(process)


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


def _stop(process: subprocess.Popen) -> None:
    """SIGKILL the head and everything it started (the job has ended: nothing is left to save)."""
    try:
        tree = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in tree:
        with contextlib.suppress(psutil.Error):
            child.kill()
    process.wait(timeout=30)
    psutil.wait_procs(tree, timeout=30)


class Background:
    """A head and one ``ray job submit`` run in a thread, so that the tests that do not need the
    job run meanwhile; :meth:`result` waits for the job, :meth:`stop` ends it early if need be."""

    def __init__(self, *args: str):
        import threading

        self._args, self._job, self._error = args, None, None
        self._stopping = threading.Event()
        self._heads: list[subprocess.Popen] = []
        self._thread = threading.Thread(target=self._run, name="ray-job", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with head(started=self._heads.append) as address:
                if not self._stopping.is_set():
                    self._job = submit(address, *self._args)
        except Exception as error:  # handed to the test that waits for the job
            self._error = error

    def result(self) -> subprocess.CompletedProcess:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._job

    def stop(self) -> None:
        self._stopping.set()
        for process in self._heads:
            if process.poll() is None:
                _stop(process)
        self._thread.join(timeout=60)
