"""The zoo spec (``sweeps/specs/zoo.yaml``: every registered method once on the tiny preset) run as a
user runs it, ``unlearn sweep`` then ``unlearn report``, each in a subprocess with its own local Ray
cluster. :func:`run` returns the sweep's directory, the report and what both commands said."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "sweeps" / "specs" / "zoo.yaml"


def _command(args: list[str], log: Path, started) -> subprocess.CompletedProcess:
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "sweeps.cli", *args], cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        started(process)
        process.wait(timeout=1500)
    return subprocess.CompletedProcess(args, process.returncode, log.read_text(), "")


def run(storage: Path, started=lambda process: None) -> dict:
    sweep = _command(["sweep", str(ZOO), "--storage", str(storage)], storage / "sweep.log", started)
    report = storage / "zoo" / "report.html"
    said = _command(["report", str(storage / "zoo"), "-o", str(report)], storage / "report.log", started)
    return {"dir": storage / "zoo", "report": report, "sweep": sweep, "report_command": said}
