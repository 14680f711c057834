"""The record of a sweep: where ``sweeps`` writes it, and how ``unlearn status``, ``unlearn export``
and the reports read it.

``<storage>/<sweep>/`` holds ``spec.yaml``, ``environment.json``, ``references.pt`` and
``reference_rows.json``; per method ``<method>/``, Tune's experiment with one directory per trial
(``run_trial_<trial id>_…``: ``params.json``, ``metrics.jsonl`` (our record, one row per epoch),
Tune's ``result.json``, ``error.txt`` when it failed); and ``train/train-<trial id>/checkpoint_*/``,
the trial's latest checkpoint, whose ``model/`` is the unlearned model once the trial is finished
(a LoRA trial's ``adapter/``: its adapters, which ``unlearn export`` merges into the base model).

A trial's state (``Trial.state``, the reports' ``status`` column) is one of :data:`STATES`:

- ``ok``: its final epoch is recorded, and its last checkpoint is the unlearned model;
- ``running``: some epochs recorded, no final one (still running, or stopped by an interrupted
  driver);
- ``stopped``: stopped early by the scheduler (ASHA: ``stopped.json``), its last epoch recorded;
- ``pending``: no epoch recorded yet;
- ``diverged``: its loss turned non-finite;
- ``error``: it failed (``error.txt``).

An epoch's row says ``ok`` or ``diverged`` in its own ``status`` field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

SPEC = "spec.yaml"
ENVIRONMENT = "environment.json"
REFERENCES = "references.pt"
REFERENCE_ROWS = "reference_rows.json"
TIMING = "timing.json"  # the sweep's trial phase; in a trial's directory, when its function started and ended
SWEEP_FILES = (REFERENCE_ROWS, SPEC, ENVIRONMENT)

PARAMS = "params.json"  # Tune's, flat (sweeps/tune_logger.py)
PROPOSED_BY = "proposed_by"  # in params.json: grid, random or the searcher that proposed the trial (sweeps.search)
METRICS = "metrics.jsonl"
RESULT = "result.json"  # Tune's
ERROR_TEXT = "error.txt"
PROBES = "_probes"  # in a row, ``<metric>_probes``: the metric's per-probe scores (benchmarks.common.put)
FINAL_REPORT = "final_report.json"  # how long the last report took to persist the model
STOPPED_EARLY = "stopped.json"  # the scheduler stopped the trial before its last epoch (sweeps.search.mark_stopped)

TRAIN = "train"  # Ray Train's storage: train-<trial id>/checkpoint_*/
MODEL = "model"  # in a final checkpoint: the unlearned model
ADAPTER = "adapter"  # in a LoRA trial's final checkpoint: its adapters (peft), which `unlearn export` merges
TRIAL_PREFIX = "run_trial_"  # Tune's trial directories of the function trial sweeps.trial.run_trial

OK, RUNNING, PENDING, DIVERGED, ERROR, STOPPED = STATES = ("ok", "running", "pending", "diverged", "error", "stopped")

_TRIAL_DIR = re.compile(rf"^{TRIAL_PREFIX}([0-9a-f]+_\d+)_")
_DIVERGED = re.compile(r"\bDiverged\b|non-finite loss", re.IGNORECASE)  # unlearn.loop.Diverged


class RecordError(ValueError):
    """A record that cannot be read: a line before the last that is not a JSON object."""


def is_sweep(path: Path) -> bool:
    """Whether ``path`` is a sweep directory."""
    return any((path / name).is_file() for name in SWEEP_FILES)


def trial_id(name: str) -> str:
    """The Tune trial id (``95357_00004``) in a trial directory's name; the name itself otherwise."""
    match = _TRIAL_DIR.match(name)
    return match.group(1) if match else name


def train_name(trial: str) -> str:
    """The Ray Train run of trial ``trial`` (a trial id), under ``<sweep>/train/``."""
    return f"train-{trial}"


def read_rows(trial_dir: Path) -> list[dict]:
    """A trial's rows, one per epoch (a re-run epoch: its last row): ``metrics.jsonl``, or Tune's
    ``result.json`` when there is none. A partly written last line (a trial writing, or one that
    crashed mid-write) is skipped; any other line that is not a JSON object is an error."""
    for name in (METRICS, RESULT):
        path = trial_dir / name
        if path.is_file():
            return list({row.get("epoch"): row for row in _json_lines(path)}.values())
    return []


def read_json(path: Path):
    """The JSON value of a record file; ``None`` when it is absent or empty."""
    text = path.read_text(errors="replace") if path.is_file() else ""
    return json.loads(text) if text.strip() else None


def append_row(trial_dir: Path, row: dict) -> None:
    """Append one epoch's row to the trial's ``metrics.jsonl``. A partly written last line is
    dropped first, so that only the last line of a record can ever be partial."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    with open(trial_dir / METRICS, "ab+") as f:
        f.seek(0)
        text = f.read()
        if text and not text.endswith(b"\n"):
            f.truncate(text.rfind(b"\n") + 1)
        f.write((json.dumps(row, default=str) + "\n").encode())


def _json_lines(path: Path) -> list[dict]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif number < len(lines):
            raise RecordError(f"{path}: line {number} is not a JSON object")
    return rows


@dataclass(frozen=True)
class Trial:
    """One trial of a sweep as its directory records it."""

    path: Path  # <sweep>/<method>/run_trial_<trial id>_…
    rows: list  # read_rows(path)
    error_text: str | None  # error.txt

    @classmethod
    def read(cls, path: Path) -> Trial:
        error = path / ERROR_TEXT
        return cls(path, read_rows(path), error.read_text(errors="replace") if error.is_file() else None)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def trial_id(self) -> str:
        return trial_id(self.path.name)

    @property
    def method(self) -> str:
        """The method its rows name; its directory's before any row."""
        return next((row["method"] for row in self.rows if row.get("method")), self.path.parent.name)

    @property
    def last(self) -> dict:
        """Its last row (``{}`` before any)."""
        return self.rows[-1] if self.rows else {}

    @property
    def state(self) -> str:
        """One of :data:`STATES`."""
        if self.last.get("status") == DIVERGED:
            return DIVERGED
        if self.error_text is not None:
            return DIVERGED if _DIVERGED.search(self.error_text) else ERROR
        if self.last.get("final"):
            return OK
        if self.rows and (self.path / STOPPED_EARLY).is_file():
            return STOPPED
        return RUNNING if self.rows else PENDING

    @property
    def error(self) -> str | None:
        """The first line of ``error.txt``, else the error its last row names (a diverged trial's)."""
        if self.error_text is not None:
            return (self.error_text.strip().splitlines() or [""])[0]
        return self.last.get("error")

    @property
    def params(self) -> dict:
        """The sampled hyper-parameters, flat (``params.json``)."""
        return read_json(self.path / PARAMS) or {}

    @property
    def checkpoints(self) -> list[Path]:
        """Its checkpoints in Ray Train's storage, oldest first (Ray keeps the latest)."""
        run = self.path.parent.parent / TRAIN / train_name(self.trial_id)
        return sorted(p for p in run.glob("checkpoint_*") if p.is_dir())

    @property
    def model_dir(self) -> Path | None:
        """The unlearned model of a finished (``ok``) trial: its model directory, or a LoRA trial's
        adapter directory (``unlearn export`` merges it into the base model)."""
        checkpoints = self.checkpoints if self.state == OK else []
        found = [checkpoints[-1] / name for name in (MODEL, ADAPTER)] if checkpoints else []
        return next((path for path in found if path.is_dir()), None)


def trials(sweep: Path) -> list[Trial]:
    """Every trial of a sweep, by method."""
    return [Trial.read(path) for path in sorted(sweep.glob(f"*/{TRIAL_PREFIX}*")) if path.is_dir()]
