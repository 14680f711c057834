"""Reading a sweep's storage directory: the trials, their state, and their models.

``unlearn status RUN`` prints progress; ``unlearn export RUN TRIAL --out DIR`` writes the model of
a trial as a standard Hugging Face directory (the last checkpoint of a finished trial already is
one, gathered from every ZeRO-3 shard; an unfinished trial's DeepSpeed checkpoint is consolidated).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from sweeps.spec import SpecError


@dataclass(frozen=True)
class Trial:
    method: str
    name: str  # Tune's trial directory name
    trial_id: str
    rows: list
    error: str

    @property
    def state(self) -> str:
        if self.rows and self.rows[-1].get("status") == "diverged":
            return "diverged"
        if self.error:
            return "error"
        if self.rows and self.rows[-1].get("final"):
            return "finished"
        return "running" if self.rows else "pending"


def sweep_dir(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not (path / "spec.yaml").is_file():
        raise SpecError(f"{str(path)!r} is not a sweep directory (no spec.yaml); pass <storage>/<sweep name>")
    return path


def trials(root: Path) -> list[Trial]:
    out = []
    for method_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "train"):
        for trial in sorted(method_dir.glob("run_trial_*")):
            rows = read_rows(trial)
            error = (trial / "error.txt").read_text().splitlines()[0] if (trial / "error.txt").is_file() else ""
            out.append(Trial(method_dir.name, trial.name, "_".join(trial.name.split("_")[2:4]), rows, error))
    return out


def read_rows(trial: Path) -> list[dict]:
    """A trial's rows, one per epoch (the last of each epoch wins): our record ``metrics.jsonl``,
    or Tune's ``result.json`` when there is none. A partly written last line is skipped."""
    for name in ("metrics.jsonl", "result.json"):
        path = trial / name
        if path.is_file():
            rows = {}
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                rows[row.get("epoch")] = row
            return list(rows.values())
    return []


def status_lines(root: Path) -> list[str]:
    found = trials(root)
    lines = [f"sweep {root.name}: {len(found)} trials"]
    for method in sorted({t.method for t in found}):
        mine = [t for t in found if t.method == method]
        counts = {s: sum(t.state == s for t in mine) for s in ("finished", "running", "pending", "diverged", "error")}
        lines.append(f"  {method:<9} " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        for t in mine:
            last = t.rows[-1] if t.rows else {}
            detail = t.error or last.get("error", "")
            lines.append(f"    {t.trial_id:<12} {t.state:<9} epoch {last.get('epoch', '-')}"
                         + (f"  {detail[:100]}" if detail else ""))
    return lines


def find(root: Path, trial: str) -> Trial:
    matches = [t for t in trials(root) if trial in (t.trial_id, t.name)]
    if not matches:
        known = ", ".join(t.trial_id for t in trials(root)) or "none"
        raise SpecError(f"no trial {trial!r} in {root}; known: {known}")
    return matches[0]


def export(root: Path, trial: str, out: str | Path) -> Path:
    """Write the trial's model to ``out`` (a new directory) as a Hugging Face model directory."""
    found = find(root, trial)
    out = Path(out)
    if out.exists():
        raise SpecError(f"--out {str(out)!r} already exists; choose a new directory")
    checkpoints = sorted((root / "train" / f"train-{found.trial_id}").glob("checkpoint_*"))
    checkpoints = [c for c in checkpoints if c.is_dir()]
    if not checkpoints:
        raise SpecError(f"trial {found.trial_id} has no checkpoint yet (state: {found.state})")
    latest = checkpoints[-1]
    if (latest / "model").is_dir():
        shutil.copytree(latest / "model", out)
        return out
    return _consolidate(root, latest, out)


def _consolidate(root: Path, checkpoint: Path, out: Path) -> Path:
    """An unfinished trial: gather the DeepSpeed (ZeRO) shards into full fp32 weights."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from unlearn import models

    environment = json.loads((root / "environment.json").read_text())
    model, tokenizer = models.load_model(environment["target"])
    tag = sorted((p.name for p in checkpoint.glob("epoch*")), key=lambda t: int(t[5:]))[-1]
    state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=tag)
    model.load_state_dict(state, strict=False)
    models.save_model(model, tokenizer, out)
    return out
