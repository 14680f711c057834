"""The session's watcher (``helpers/reaper.py``): once the process that started it ends, however it
ends, every process that carries its mark is killed, in whatever session it runs; others are not."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

TESTS = Path(__file__).resolve().parent

# Starts the watcher, a marked process in a session of its own (as a `ray start --head` is) and an
# unmarked one, prints their PIDs, then dies without any clean-up.
PARENT = """
import os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from helpers import reaper
reaper.start()
quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
marked = subprocess.Popen(["sleep", "600"], **quiet)
env = {k: v for k, v in os.environ.items() if k != reaper.SESSION_ENV}
unmarked = subprocess.Popen(["sleep", "601"], env=env, **quiet)
print(marked.pid, unmarked.pid, flush=True)
os.abort()
"""


def _gone(pid: int, wait_s: float = 30.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_a_dead_session_takes_its_marked_processes_with_it():
    parent = subprocess.run([sys.executable, "-c", PARENT, str(TESTS)], capture_output=True, text=True, timeout=60)
    assert parent.returncode != 0  # it aborted
    marked, unmarked = map(int, parent.stdout.split())
    try:
        assert _gone(marked)
        assert psutil.pid_exists(unmarked) and psutil.Process(unmarked).status() != psutil.STATUS_ZOMBIE
    finally:
        for pid in (marked, unmarked):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
