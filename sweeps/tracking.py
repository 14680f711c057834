"""Experiment tracking: besides its own files, a sweep sends its results to the tracker a lab already
uses, MLflow or Weights & Biases, through Ray Tune's logger callbacks (``sweeps.trackers``).

The spec's ``tracking`` section names the trackers; each is validated here, before Ray starts (an
unknown tracker or key, a missing ``uri`` or ``project``, a W&B ``mode`` other than ``online``,
``offline`` or ``disabled``, or a tracker whose package is not installed stops the sweep with one
line)::

    tracking:
      mlflow: {uri: sqlite:///mlflow.db, experiment: my-lab}  # experiment: the sweep's name by default
      wandb: {project: my-lab, mode: offline}

Each trial is one tracker run: its hyper-parameters under their flat names (``lr``, ``gamma``,
``seed`` …), every epoch's numeric metrics with their standard errors (``<metric>_stderr``) at
step = epoch, and the sweep's ``spec.yaml`` and ``environment.json`` as artifacts. The runs of every
method go to the same MLflow experiment, or the same W&B group.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from unlearn.validate import ValidationError, fail

WANDB_MODES = ("online", "offline", "disabled")
# the module each tracker imports, and what to install when it is missing
PACKAGES = {"mlflow": ("mlflow", "mlflow-skinny"), "wandb": ("wandb", "wandb")}


def _text(where: str, value, allowed: str, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        fail(where, allowed, value)


@dataclass(frozen=True)
class MLflow:
    """An MLflow tracking URI (a server, ``sqlite:///FILE``, or a directory: a file store) and the
    experiment every trial's run goes to (``None``: the sweep's name)."""

    uri: str
    experiment: str | None = None

    def __post_init__(self):
        _text("tracking.mlflow.uri", self.uri, "a tracking URI (http://HOST:PORT, sqlite:///FILE or a directory)",
              required=True)
        _text("tracking.mlflow.experiment", self.experiment, "an experiment name")


@dataclass(frozen=True)
class Wandb:
    """A W&B project, the mode of its runs, and optionally the entity (team or user) and the group
    the trials' runs are filed under (``None``: the sweep's name)."""

    project: str
    mode: str = "online"
    entity: str | None = None
    group: str | None = None

    def __post_init__(self):
        _text("tracking.wandb.project", self.project, "a project name", required=True)
        if self.mode not in WANDB_MODES:
            fail("tracking.wandb.mode", f"one of {', '.join(WANDB_MODES)}", self.mode)
        _text("tracking.wandb.entity", self.entity, "a team or user name")
        _text("tracking.wandb.group", self.group, "a group name")


TRACKERS = {"mlflow": MLflow, "wandb": Wandb}


@dataclass(frozen=True)
class Tracking:
    """The trackers a sweep reports to (none by default); each section is a mapping of its fields."""

    mlflow: MLflow | None = None
    wandb: Wandb | None = None

    def __post_init__(self):
        for name, cls in TRACKERS.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                object.__setattr__(self, name, _section(cls, value, f"tracking.{name}"))
        for name in self.names():
            module, package = PACKAGES[name]
            if not installed(module):
                raise ValidationError(f"tracking.{name} needs the {package} package, which is not installed: "
                                      f"pip install {package}")

    def names(self) -> list[str]:
        """The trackers the sweep reports to."""
        return [name for name in TRACKERS if getattr(self, name) is not None]


def _section(cls, raw, where: str):
    """A tracker's section from its YAML mapping, loaded strictly."""
    fields = dataclasses.fields(cls)
    if not isinstance(raw, dict):
        fail(where, f"a mapping with keys among {', '.join(f.name for f in fields)}", raw)
    for key in raw:
        if key not in [f.name for f in fields]:
            fail(f"{where}.{key}", f"one of {', '.join(f.name for f in fields)} (unknown key)", key)
    for f in fields:
        if f.default is dataclasses.MISSING and f.name not in raw:
            fail(f"{where}.{f.name}", "given", None)
    return cls(**raw)


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here."""
    return importlib.util.find_spec(module) is not None


def preflight(tracking: Tracking, sweep: str) -> None:
    """Before anything is computed: an online W&B run needs an API key, and the MLflow store must
    open; either failing stops the sweep in one line rather than at its first trial."""
    if tracking.wandb is not None and tracking.wandb.mode == "online":
        from ray.air.integrations.wandb import _set_api_key

        try:
            _set_api_key()  # WANDB_API_KEY, `wandb login`, or W&B's key hook, as the callback looks for it
        except ValueError:
            raise ValidationError("tracking.wandb.mode online needs a W&B API key: set WANDB_API_KEY or run "
                                  "`wandb login`, or use mode offline") from None
    if tracking.mlflow is None:
        return
    import logging

    from mlflow.tracking import MlflowClient

    uri = tracking.mlflow.uri
    quiet = logging.getLogger("mlflow")
    level, quiet.level = quiet.level, logging.WARNING  # the store's own start-up lines
    try:
        MlflowClient(tracking_uri=uri).get_experiment_by_name(tracking.mlflow.experiment or sweep)
    except Exception as error:  # the store's own message, on one line
        text = str(error)
        if "MLFLOW_ALLOW_FILE_STORE" in text:
            text = ("MLflow 3 opens a file store only with MLFLOW_ALLOW_FILE_STORE=true in the environment; "
                    "set it, or use sqlite:///FILE or a tracking server")
        raise ValidationError(f"tracking.mlflow.uri {uri!r}: {' '.join(text.split())[:300]}") from None
    finally:
        quiet.level = level


def callbacks(tracking: Tracking, sweep: str, method: str, sweep_dir: str | Path) -> list:
    """The Tune logger callbacks of one method's Tuner: one per tracker of the spec. ``sweep``
    names the MLflow experiment and the W&B group unless the spec names them."""
    if not tracking.names():
        return []
    from reports.record import ENVIRONMENT, SPEC
    from sweeps import trackers

    records = tuple(str(Path(sweep_dir) / name) for name in (SPEC, ENVIRONMENT))
    out = []
    if tracking.mlflow is not None:
        out.append(trackers.SweepMLflow(tracking.mlflow.uri, experiment_name=tracking.mlflow.experiment or sweep,
                                        sweep=sweep, method=method, records=records))
    if tracking.wandb is not None:
        settings = tracking.wandb
        out.append(trackers.SweepWandb(project=settings.project, group=settings.group or sweep, mode=settings.mode,
                                       entity=settings.entity, sweep=sweep, method=method, records=records))
    return out
