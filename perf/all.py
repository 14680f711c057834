"""`make perf`: items 1–5 of the performance suite, one after the other, and item 6's test.

Each part runs as its own process (so none inherits another's memory or threads), prints its own
numbers and writes its JSON under perf/results/; this runner times the parts and writes
perf/results/perf.json with the durations and the total.

    .venv/bin/python perf/all.py            # what `make perf` runs
    .venv/bin/python perf/all.py --list     # the parts and their commands
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import record  # perf/record.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# (name, command): settings sized so that the whole suite stays under 20 minutes on 2 cores.
PARTS = [
    # blocks of one step, alternated twice; DeepSpeed at micro-batch 2 x 256 per worker
    ("step", [PY, "perf/step.py", "--rounds", "2", "--steps", "1", "--ds-micro-batch", "2"]),
    ("memory", [PY, "perf/memory.py"]),
    ("generation", [PY, "perf/generation.py", "--model", "smollm2",
                    "--out", "perf/results/generation-smollm2.json"]),
    ("sweep", [PY, "perf/sweep.py", "--run", "demo"]),
    ("plan", [PY, "-m", "pytest", "-q", "tests/test_plan.py"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the parts and exit")
    parser.add_argument("--only", help="comma-separated part names (default: all)")
    args = parser.parse_args()
    parts = [p for p in PARTS if not args.only or p[0] in args.only.split(",")]
    if args.list:
        for name, command in parts:
            print(f"{name}: {' '.join(command)}")
        return 0
    durations, began = {}, time.time()
    for i, (name, command) in enumerate(parts, 1):
        print(f"\n== [{i}/{len(parts)}] {name}: {' '.join(command[1:])}", flush=True)
        start = time.time()
        code = subprocess.run(command, cwd=ROOT).returncode
        durations[name] = round(time.time() - start, 1)
        print(f"== {name}: {durations[name]:.0f} s (total so far {time.time() - began:.0f} s)", flush=True)
        if code:
            print(f"perf: part {name!r} failed with exit code {code}", file=sys.stderr)
            return code
    total = round(time.time() - began, 1)
    print("\n" + "\n".join(f"{name:>11}  {seconds:7.1f} s" for name, seconds in durations.items()))
    print(f"{'total':>11}  {total:7.1f} s ({total / 60:.1f} min)")
    if not args.only:
        record.write({"benchmark": "perf", "parts_s": durations, "total_s": total, "machine": record.machine(),
                      "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, ROOT / "perf" / "results" / "perf.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
