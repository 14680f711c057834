"""Whatever a test session starts ends with it, however the session ends.

The session's sweeps start processes that outlive their parent by design: ``ray start --head
--block`` and ``unlearn sweep`` drivers run in sessions of their own, and a Ray cluster's workers
belong to its raylet. The session's fixtures stop them when it ends normally; if the test process
dies instead (a crash, a signal), nothing would, and they would run on. So every process started
from the test session carries ``SESSION_ENV`` in its environment (it is inherited, across Ray's
processes too), and a small watcher, started first, waits for the test process's end of a pipe
to close, then kills every process that carries the session's value."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

SESSION_ENV = "UNLEARN_TEST_SESSION"

_WATCH = r"""
import os, signal, sys
mark = ("%s=" % sys.argv[1]).encode() + sys.argv[2].encode() + b"\0"
sys.stdin.buffer.read()  # returns once every writer has closed: the test process has ended
for _ in range(3):  # a process may be starting another as it is killed
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark in f.read() + b"\0":
                    os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def start() -> subprocess.Popen | None:
    """Mark this process's environment with a new session value and start its watcher (Linux only:
    it reads ``/proc``). The watcher holds no descriptor of ours but its pipe."""
    if not os.path.isdir("/proc"):
        return None
    value = uuid.uuid4().hex
    os.environ[SESSION_ENV] = value
    return subprocess.Popen([sys.executable, "-c", _WATCH, SESSION_ENV, value], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
