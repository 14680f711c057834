"""Sweep results → pandas, Pareto fronts, hypervolume, KL analysis figures and one HTML report.

``load(paths)`` → tidy DataFrame; ``declaration(df)`` → the benchmark's declaration recorded with a
sweep (metrics, fronts, trajectories, selection rule, facets); ``export(df, path)`` → CSV / Parquet;
``pareto_front(df, objectives)``; ``hypervolume(points, objectives, reference)``;
``render(df_or_paths, output)`` → HTML. ``reports.record`` names the files of a sweep's record and
reads them: each trial's rows and its state, for these and for ``unlearn status``.
The names are resolved on first use, so that ``import reports.cli`` (the ``unlearn`` command line)
does not import pandas or matplotlib.
"""

from __future__ import annotations

import importlib

_API = {"load": "reports.results", "export": "reports.results", "directions": "reports.results",
        "declaration": "reports.results",
        "pareto_front": "reports.pareto", "hypervolume": "reports.pareto", "reference_point": "reports.pareto",
        "configurations": "reports.pareto", "render": "reports.html"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'reports' has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(_API[name]), name)
    return value
