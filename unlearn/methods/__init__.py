"""Method registry: ``names()``, ``get(name)``, ``make(name, params)``.

A method is one small file: a frozen config dataclass (validated on construction) whose
``forget_loss`` calls the pure losses of :mod:`unlearn.losses`. The total loss is composed in
:mod:`unlearn.step`: ``forget_weight * forget_term + retain_weight * retain_term``, the retain
term chosen by name (``none``, ``nll``, ``kl``).

Methods: ``ga``, ``gd``, ``npo``, ``simnpo``, ``idknll``, ``idkdpo``, ``wga``, ``satimp``, ``ceu``,
``me`` (maximum entropy), ``undial``, ``unilogit``. The RMU losses exist in :mod:`unlearn.losses`
but no method uses them yet: RMU needs hidden states of a named layer, which the step does not
provide.
"""

from __future__ import annotations

from unlearn.methods import ceu, ga, gd, idkdpo, idknll, me, npo, satimp, simnpo, undial, unilogit, wga  # noqa: F401  (registration)
from unlearn.methods.base import RETAIN_TERMS, MethodConfig, get, make, names, register

__all__ = ["RETAIN_TERMS", "MethodConfig", "get", "make", "names", "register"]
