"""The four packages resolve to this repository, and the core stays free of Ray and DeepSpeed."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["unlearn", "benchmarks", "sweeps", "reports"])
def test_package_resolves_to_this_repository(package):
    module = importlib.import_module(package)
    assert Path(module.__file__).resolve().parent == ROOT / package


def test_importing_unlearn_does_not_import_ray_or_deepspeed():
    code = (
        "import sys, unlearn, unlearn.losses, unlearn.methods, unlearn.step, unlearn.loop, "
        "unlearn.engine, unlearn.models, unlearn.data, unlearn.schedule\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'deepspeed'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert out.stdout.strip() == ""


def test_cli_entry_point_is_light():
    code = "import sys, sweeps.cli; print(','.join(m for m in ('ray', 'deepspeed', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert out.stdout.strip() == ""
