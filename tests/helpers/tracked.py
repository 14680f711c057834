"""One small sweep that two tests read: it reports to MLflow (a local file store) and to W&B
(offline), and it runs while every model loader of the driver process fails, so that it also shows
that the driver loads no model (its target and oracle are prepared, and its references computed,
in a Ray task; its trials load in Ray workers). Its own benchmark (prepared in one epoch), NPO (it
needs reference NLLs too) at two learning rates, two epochs each on one worker, the two trials at
once on the 2-CPU cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.sweep_specs import own_benchmark
from reports.record import trial_id
from sweeps import spec as specs

METHOD = "npo"
SWEEP = own_benchmark("tracked", 11, {METHOD: {"lr": {"grid": [1.0e-3, 3.0e-3]}}}, epochs=2,
                      scaling={"workers": 1, "zero_stage": 0, "cpus_per_worker": 0.9}, max_concurrent_trials=2)


def _refuse(*args, **kwargs):
    raise AssertionError("the driver loaded a model")


def run(root: Path) -> dict:
    """The sweep's directory, the tracking URI, its trials by ID and every progress line it said."""
    import benchmarks.prepare
    from sweeps.run import run_sweep
    from unlearn import models, pretrained

    uri = (root / "mlruns").as_uri()
    spec = dict(SWEEP, tracking={"mlflow": {"uri": uri, "experiment": "lab"},
                                "wandb": {"project": "lab", "mode": "offline"}})
    said = []
    with pytest.MonkeyPatch.context() as patch:
        for module, name in ((models, "load_model"), (benchmarks.prepare, "_build"), (pretrained, "smollm2")):
            patch.setattr(module, name, _refuse)
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        patch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
        patch.setenv("WANDB_SILENT", "true")
        for name in ("CACHE", "CONFIG", "DATA"):
            patch.setenv(f"WANDB_{name}_DIR", str(root / f"wandb-{name.lower()}"))
        patch.delenv("WANDB_API_KEY", raising=False)
        patch.delenv("WANDB_DIR", raising=False)
        outcome = run_sweep(specs.from_dict(spec), storage=str(root / "runs"), progress=said.append)
    assert outcome.finished == 2 and not outcome.failed, outcome
    trials = sorted(p for p in (outcome.sweep_dir / METHOD).iterdir() if p.is_dir())
    return {"dir": outcome.sweep_dir, "uri": uri, "trials": {trial_id(p.name): p for p in trials}, "said": said}
