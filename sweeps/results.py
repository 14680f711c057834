"""A sweep's trials, their states and their models, as ``reports.record`` reads them.

``unlearn status RUN`` prints each trial's state (``reports.record.STATES``: ok, running, pending,
diverged, error, stopped) and last epoch; ``unlearn export RUN TRIAL --out DIR`` writes the model of a trial
as a standard Hugging Face directory (the last checkpoint of a finished trial already is one,
gathered from every ZeRO-3 shard; an unfinished trial's DeepSpeed checkpoint is consolidated). A
LoRA trial's checkpoints hold its adapters only: export merges them into the base model they were
trained on (``unlearn.lora.merged``), so the directory needs no peft to load.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reports.record import ADAPTER, ENVIRONMENT, MODEL, STATES, SWEEP_FILES, Trial, is_sweep, trials
from sweeps.spec import SpecError


def sweep_dir(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not is_sweep(path):
        raise SpecError(f"{str(path)!r} is not a sweep directory (no {', '.join(SWEEP_FILES)}); "
                        f"pass <storage>/<sweep name>")
    return path


def status_lines(root: Path) -> list[str]:
    found = trials(root)
    lines = [f"sweep {root.name}: {len(found)} trials"]
    for method in sorted({t.method for t in found}):
        mine = [t for t in found if t.method == method]
        counts = {s: sum(t.state == s for t in mine) for s in STATES}
        lines.append(f"  {method:<9} " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        for t in mine:
            lines.append(f"    {t.trial_id:<12} {t.state:<9} epoch {t.last.get('epoch', '-')}"
                         + (f"  {str(t.error)[:100]}" if t.error else ""))
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
    if not found.checkpoints:
        raise SpecError(f"trial {found.trial_id} has no checkpoint yet (state: {found.state})")
    latest = found.checkpoints[-1]
    if (latest / MODEL).is_dir():
        shutil.copytree(latest / MODEL, out)
        return out
    if (latest / ADAPTER).is_dir():
        return _merge(latest / ADAPTER, out)
    return _consolidate(root, latest, out)


def _merge(adapters: Path, out: Path, state: dict | None = None) -> Path:
    """A LoRA trial: its adapters merged into the base model, written as a plain model directory."""
    from unlearn import lora, models

    try:
        model, tokenizer = lora.merged(adapters, state)
    except ValueError as error:
        raise SpecError(str(error)) from None
    models.save_model(model, tokenizer, out)
    return out


def _consolidate(root: Path, checkpoint: Path, out: Path) -> Path:
    """An unfinished trial: gather the DeepSpeed (ZeRO) shards into full fp32 weights (a LoRA
    trial's: its adapters, merged into the base model its adapter config names)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from unlearn import lora, models

    tag = sorted((p.name for p in checkpoint.glob("epoch*")), key=lambda t: int(t[5:]))[-1]
    state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=tag)
    if (checkpoint / lora.ADAPTER_CONFIG).is_file():
        return _merge(checkpoint, out, state)
    environment = json.loads((root / ENVIRONMENT).read_text())
    model, tokenizer = models.load_model(environment["target"])
    model.load_state_dict(state, strict=False)
    models.save_model(model, tokenizer, out)
    return out
