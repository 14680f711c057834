"""A test hook that kills a worker, or the node it runs on, for real, at a point chosen in advance.

``UNLEARN_FAIL_AT="rank=R,epoch=E"`` makes rank R's worker process of every trial die (SIGKILL) when
epoch E ends, before that epoch's checkpoint, evaluation and report, and once Ray Train has
registered the checkpoint of epoch E − 1 (:func:`wait_until_registered`): the worker group that
Ray Train starts again resumes from that one. It fires once per trial: a marker file in the
trial's directory records that it fired, so the new worker group runs on. With ``rank=0`` (or an
epoch before the last) nothing of epoch E is recorded before the kill, so the trial's record
holds every epoch once. Unset, it does nothing. The driver refuses a malformed value before
anything runs and forwards the variable to every worker (``sweeps.cluster.FORWARDED``).

``UNLEARN_FAIL_AT="rank=R,epoch=E,kill=node"`` stops at the same point but leaves the killing to
whoever watches for it: the worker writes the marker, naming its Ray node, beside the sweep's
trials (``<sweep>/``, :data:`NODE_MARKER`) and waits there to die with that node. It fires once per
sweep, in the first trial to get there (the other trials on that node die with it).
A test that removes the named node from a cluster of several nodes then sees what a lost machine
does (``tests/test_multinode.py``). Left alone for :data:`NODE_WAIT_S`, the worker dies by itself.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unlearn.validate import check, check_int

ENV = "UNLEARN_FAIL_AT"
MARKER = "fault_injected.json"  # in the trial's directory once the hook has fired
NODE_MARKER = "node_fault.json"  # with kill=node: in the sweep's directory, naming the trial and the node
KILLS = ("worker", "node")
NODE_WAIT_S = 600.0  # with kill=node: how long the worker waits for its node to be killed


@dataclass(frozen=True)
class FailAt:
    rank: int
    epoch: int
    kill: str = "worker"  # "node": wait to die with this worker's node (killed by whoever watches)

    def __post_init__(self):
        check_int(f"{ENV} rank", self.rank, 0)
        check_int(f"{ENV} epoch", self.epoch, 1)
        check(self.kill in KILLS, f"{ENV} kill", " or ".join(KILLS), self.kill)

    def fire(self, rank: int, epoch: int, trial_dir: str | Path | None,
             before: Callable[[], None] | None = None, node: Callable[[], dict] | None = None) -> None:
        """Kill this process (after calling ``before``) when it is the chosen rank at the end of
        the chosen epoch, unless this trial's marker says the hook already fired. With
        ``kill="node"`` write the sweep's marker instead, with ``node()`` (this worker's Ray
        node), and wait to die with that node, unless the marker is there already."""
        if (rank, epoch) != (self.rank, self.epoch) or trial_dir is None:
            return
        marker = Path(trial_dir) / MARKER if self.kill == "worker" else Path(trial_dir).parents[1] / NODE_MARKER
        if marker.exists():
            return
        if before is not None:
            before()
        marker.parent.mkdir(parents=True, exist_ok=True)
        record = {"rank": rank, "epoch": epoch, "pid": os.getpid(), "time": time.time(), "kill": self.kill}
        if self.kill == "node":
            record.update(trial=str(Path(trial_dir).relative_to(marker.parent)), **(node() if node else {}))
        if not _create(marker, record):
            return
        _die(NODE_WAIT_S if self.kill == "node" else 0)  # with kill=node the node goes down with it first


def _die(wait_s: float) -> None:
    """Wait ``wait_s`` seconds (none when 0), then end this process at once (SIGKILL)."""
    if wait_s:
        time.sleep(wait_s)
    os.kill(os.getpid(), signal.SIGKILL)


def _create(path: Path, record: dict) -> bool:
    """Write ``record`` to a new file at ``path``, durably; ``False`` when it exists already."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, json.dumps(record).encode())
    os.fsync(fd)
    os.close(fd)
    return True


def from_env(environ=os.environ) -> FailAt | None:
    """The hook the environment asks for, or ``None``; a malformed value is a one-line error."""
    text = environ.get(ENV, "").strip()
    if not text:
        return None
    form = "rank=R,epoch=E (integers), optionally kill=worker or kill=node"
    pairs = [part.split("=", 1) for part in text.split(",")]
    keys = sorted(pair[0].strip() for pair in pairs)
    check(all(len(pair) == 2 for pair in pairs) and keys in (["epoch", "rank"], ["epoch", "kill", "rank"]),
          ENV, form, text)
    values = {key.strip(): value.strip() for key, value in pairs}
    check(all(values[key].isdigit() for key in ("rank", "epoch")) and values.get("kill", "worker") in KILLS,
          ENV, form, text)
    return FailAt(rank=int(values["rank"]), epoch=int(values["epoch"]), kill=values.get("kill", "worker"))


def wait_until_registered(timeout: float = 120.0) -> None:
    """Wait until Ray Train's controller has registered the last checkpoint this worker reported:
    its checkpoint manager's snapshot, beside the run's checkpoints, names it once registered. A
    worker group started again then resumes from it (without the wait, a kill right after a short
    epoch can come before the controller's next poll, and the group would resume from the one
    before). Nothing to wait for when no checkpoint was reported."""
    import ray.train
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    latest = ray.train.get_checkpoint()
    if latest is None:
        return
    snapshot = Path(ray.train.get_context().get_storage().experiment_fs_path) / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
    name = Path(latest.path).name
    deadline = time.time() + timeout
    while time.time() < deadline:
        if snapshot.is_file() and name in snapshot.read_text(errors="replace"):
            return
        time.sleep(0.05)
