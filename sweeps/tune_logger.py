"""Tune's per-trial ``params.json`` with the hyper-parameters under their own names.

A method's param space is nested (``{"method": ..., "run": ...}``, ``sweeps.space``); the reports
read a trial's hyper-parameters from ``params.json`` as flat columns (``lr``, ``gamma``, ``seed``,
``subject``, the gridded benchmark parameters). This logger takes the place of Tune's own JSON
logger (Tune adds its default one only when none is given) and writes the flat mapping; each
line of ``result.json`` keeps Tune's nested ``config``.
"""

from __future__ import annotations

from ray.tune.logger import JsonLoggerCallback

from sweeps.space import flat


class FlatParams(JsonLoggerCallback):
    def update_config(self, trial, config: dict) -> None:
        super().update_config(trial, flat(config))
