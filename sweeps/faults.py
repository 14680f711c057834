"""A test hook that kills a worker for real, at a point chosen in advance.

``UNLEARN_FAIL_AT="rank=R,epoch=E"`` makes rank R's worker process of every trial die (SIGKILL) when
epoch E ends, before that epoch's checkpoint, evaluation and report, and once Ray Train has
registered the checkpoint of epoch E − 1 (:func:`wait_until_registered`): the worker group that
Ray Train starts again resumes from that one. It fires once per trial: a marker file in the
trial's directory records that it fired, so the new worker group runs on. With ``rank=0`` (or an
epoch before the last) nothing of epoch E is recorded before the kill, so the trial's record
holds every epoch once. Unset, it does nothing. The driver refuses a malformed value before
anything runs and forwards the variable to every worker (``sweeps.cluster.FORWARDED``).
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


@dataclass(frozen=True)
class FailAt:
    rank: int
    epoch: int

    def __post_init__(self):
        check_int(f"{ENV} rank", self.rank, 0)
        check_int(f"{ENV} epoch", self.epoch, 1)

    def fire(self, rank: int, epoch: int, trial_dir: str | Path | None,
             before: Callable[[], None] | None = None) -> None:
        """Kill this process (after calling ``before``) when it is the chosen rank at the end of
        the chosen epoch, unless this trial's marker says the hook already fired."""
        if (rank, epoch) != (self.rank, self.epoch) or trial_dir is None:
            return
        if (Path(trial_dir) / MARKER).exists():
            return
        if before is not None:
            before()
        Path(trial_dir).mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(Path(trial_dir) / MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, json.dumps({"rank": rank, "epoch": epoch, "pid": os.getpid(), "time": time.time()}).encode())
        os.fsync(fd)
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def from_env(environ=os.environ) -> FailAt | None:
    """The hook the environment asks for, or ``None``; a malformed value is a one-line error."""
    text = environ.get(ENV, "").strip()
    if not text:
        return None
    pairs = [part.split("=", 1) for part in text.split(",")]
    check(all(len(pair) == 2 for pair in pairs) and sorted(key.strip() for key, _ in pairs) == ["epoch", "rank"],
          ENV, "rank=R,epoch=E (integers)", text)
    values = {key.strip(): value.strip() for key, value in pairs}
    check(all(value.isdigit() for value in values.values()), ENV, "rank=R,epoch=E (integers)", text)
    return FailAt(rank=int(values["rank"]), epoch=int(values["epoch"]))


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
