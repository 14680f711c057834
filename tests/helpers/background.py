"""Work that a test needs, started in a thread as the session starts, so that the tests that do
not need it run meanwhile. The test waits for its result; nothing races: the work is a fixed
sequence, and only its result is read."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable

import psutil


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process started in a session of its own and everything it started (a driver and
    its local Ray cluster, or a Ray head and its workers)."""
    try:
        tree = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in tree:
        with contextlib.suppress(psutil.Error):
            child.kill()
    process.wait(timeout=30)
    psutil.wait_procs(tree, timeout=30)


class Background:
    """``work(started=...)`` in a thread, once ``after`` (another Background) has finished; ``work``
    hands each process it starts to ``started``, so that :meth:`stop` can end them if the session
    ends first."""

    def __init__(self, work: Callable, after: Background | None = None):
        self._value, self._error = None, None
        self._processes: list[subprocess.Popen] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work, after), daemon=True)
        self._thread.start()

    def _run(self, work: Callable, after: Background | None) -> None:
        if after is not None:
            after._thread.join()
        if self._stopping.is_set():
            return
        try:
            self._value = work(started=self._processes.append)
        except BaseException as error:  # handed to the test that waits for the result
            self._error = error

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

    def stop(self) -> None:
        self._stopping.set()
        for process in self._processes:
            if process.poll() is None:
                kill_tree(process)
        self._thread.join(timeout=60)
