"""Method registry: ``names()``, ``get(name)``, ``make(name, params)``.

A method is one small file: a frozen config dataclass (validated on construction) whose
``forget_loss`` calls the pure losses of :mod:`unlearn.losses`. The total loss is composed in
:mod:`unlearn.step`: ``forget_weight * forget_term + retain_weight * retain_term``, the retain
term chosen by name (``none``, ``nll``, ``kl``, ``hidden``: :data:`unlearn.step.RETAIN`).

Methods: ``ga``, ``gd``, ``npo``, ``simnpo``, ``idknll``, ``idkdpo``, ``wga``, ``satimp``, ``ceu``,
``me`` (maximum entropy), ``pdu`` (primal-dual: the retain weight is a dual variable), ``rmu`` (on
the hidden states of one layer), ``undial``, ``unilogit``.
"""

from __future__ import annotations

from unlearn.methods import ceu, ga, gd, idkdpo, idknll, me, npo, pdu, rmu, satimp, simnpo, undial, unilogit, wga  # noqa: F401  (registration)
from unlearn.methods.base import RETAIN_TERMS, MethodConfig, get, make, names, register, trained_parameters

__all__ = ["RETAIN_TERMS", "MethodConfig", "get", "make", "names", "register", "trained_parameters"]
