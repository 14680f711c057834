"""Benchmarks: the registry, data, inference, metrics and evaluation.

``names()`` and ``get(name, **params)`` reach every benchmark (``synthetic`` …); metric functions
live in :mod:`benchmarks.metrics`, model-touching inference in :mod:`benchmarks.inference`.
"""

from benchmarks import jsonl as _jsonl  # noqa: F401  (registration)
from benchmarks import muse as _muse  # noqa: F401  (registration)
from benchmarks import rwku as _rwku  # noqa: F401  (registration)
from benchmarks import synthetic as _synthetic  # noqa: F401  (registration)
from benchmarks import tofu as _tofu  # noqa: F401  (registration)
from benchmarks import wmdp as _wmdp  # noqa: F401  (registration)
from benchmarks.spec import Metric, get, names, register  # noqa: F401

__all__ = ["Metric", "get", "names", "register"]
