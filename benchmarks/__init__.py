"""Benchmarks: the registry, data, inference, metrics and evaluation.

``names()`` and ``get(name, **params)`` reach every benchmark (``synthetic`` …); metric functions
live in :mod:`benchmarks.metrics`, model-touching inference in :mod:`benchmarks.inference`.
"""

from benchmarks.spec import Metric, get, names, register  # noqa: F401
from benchmarks import synthetic as _synthetic  # noqa: F401  (registration)

__all__ = ["Metric", "get", "names", "register"]
