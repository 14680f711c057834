"""Work-arounds for other packages, each applied only where it was checked, each saying when it can
be dropped. A worker applies them before ``deepspeed.initialize`` (:func:`apply`)."""

from __future__ import annotations

import functools
import re

# DeepSpeed versions the Muon work-around was checked on: >= 0.19, < 0.20.
MUON_CHECKED = ((0, 19), (0, 20))


def apply(device_type: str) -> list[str]:
    """Apply the work-arounds that hold for this worker; the names of those applied."""
    return ["defer_muon_compile"] if defer_muon_compile(device_type) else []


def defer_muon_compile(device_type: str) -> bool:
    """DeepSpeed's ZeRO code imports its Muon optimizer module even when the optimizer is AdamW (to
    compare classes), and that module's ``@compiler.compile()`` decorators call ``torch.compile`` at
    import, which imports TorchInductor: 1.5 s of each worker's start on CPU. Those decorators (the
    only users of ``compiler.compile`` in the checked versions) compile on the first call instead.

    Applied only on CPU, where it was measured, and only for the DeepSpeed versions in
    ``MUON_CHECKED``. Drop it when DeepSpeed
    no longer compiles at import in its Muon module, or when ZeRO no longer imports that module for
    other optimizers: then a worker start without it does not import ``torch._inductor``.
    Returns whether it was applied."""
    import deepspeed

    if device_type != "cpu" or not _in_range(deepspeed.__version__, *MUON_CHECKED):
        return False
    from deepspeed.runtime import compiler

    compiler.compile = lambda: _on_first_call
    return True


def _in_range(version: str, low: tuple, high: tuple) -> bool:
    match = re.match(r"(\d+)\.(\d+)", version)
    return bool(match) and low <= tuple(int(part) for part in match.groups()) < high


def _on_first_call(fn):
    """``fn`` compiled with ``torch.compile`` when first called (its name kept)."""
    compiled = None

    @functools.wraps(fn)
    def call(*args, **kwargs):
        nonlocal compiled
        if compiled is None:
            import torch

            compiled = torch.compile(fn)
        return compiled(*args, **kwargs)
    return call
