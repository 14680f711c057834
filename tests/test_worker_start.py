"""What a worker does before its first step that is not Ray's: DeepSpeed's Muon module (which
DeepSpeed's ZeRO code imports whatever the optimizer) no longer pulls in TorchInductor at import,
and its functions keep their names and compile when first called."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent("""
    import sys
    {setup}
    from deepspeed.runtime.zero.muon.muon_optimizer import MuonWithAuxAdam  # as ZeRO's checks import it
    from deepspeed.runtime.zero.muon import original_muon
    print("inductor" if "torch._inductor.compile_fx" in sys.modules else "no inductor",
          original_muon.muon_update.__name__)
""")


def _probe(setup: str) -> str:
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip().splitlines()[-1]


def test_muon_compile_is_deferred_to_first_call():
    assert _probe("").startswith("inductor ")  # DeepSpeed on its own: the cost being removed
    assert _probe("from sweeps.worker import _defer_muon_compile; _defer_muon_compile()") == "no inductor muon_update"
