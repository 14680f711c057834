"""Runs `unlearn demo` (or `--quick`) in a fresh directory and records the wall time of each phase
(obtaining the model — download or wheel conversion —, preparing target and oracle,
references, sweep, report) and the peak memory of the
whole process tree. Writes perf/results/demo.json (or demo-quick.json).

    .venv/bin/python perf/demo.py [--quick] [--cold]

--cold uses an empty cache (UNLEARN_CACHE in a temporary directory), as on a fresh machine."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
MARKS = (("model", "] loaded "), ("prepared", "] done in "), ("prepared", "] reusing "),
         ("references", "references computed"), ("sweep_done", "done: results in"), ("report", "report: "))


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _summary(lines: list[str]) -> list[str]:
    """What ``unlearn demo`` printed at the end: from its summary table's header to the report's path."""
    starts = [i for i, line in enumerate(lines) if line.startswith("method ")]
    return [line.rstrip() for line in lines[starts[-1] if starts else -12:]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--seed", type=int, help="the benchmark's seed (unlearn demo --seed)")
    parser.add_argument("--out", help="the result file (default perf/results/demo.json or demo-quick.json)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="demo-bench-"))
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    if args.cold:
        env["UNLEARN_CACHE"] = str(work / "cache")
    command = [str(Path(sys.executable).parent / "unlearn"), "demo"] + (["--quick"] if args.quick else []) \
        + ([f"--seed={args.seed}"] if args.seed is not None else [])
    start = time.time()
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss(process.pid))
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    seen, lines = {}, []
    for line in process.stdout:
        lines.append(line)
        for name, marker in MARKS:
            if marker in line and name not in seen:
                seen[name] = round(time.time() - start, 1)
                print(f"[perf] {name} at {seen[name]} s", flush=True)
    rc = process.wait()
    total = round(time.time() - start, 1)
    marks = [("model_s", "model"), ("prepare_s", "prepared"), ("references_s", "references"),
             ("sweep_s", "sweep_done")]
    phases, before = {}, 0.0
    for name, mark in marks:  # each phase from the end of the one before
        phases[name] = round(seen[mark] - before, 1) if mark in seen else None
        before = seen.get(mark, before)
    phases["report_s"] = round(total - before, 1)
    result = {"benchmark": "demo", "quick": args.quick, "cold_cache": args.cold, "seed": args.seed, "exit_code": rc,
              "total_s": total,
              "phases": phases, "peak_rss_gib": round(peak[0] / 2 ** 30, 2),
              "summary": _summary(lines),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = Path(args.out) if args.out else ROOT / "perf" / "results" / ("demo-quick.json" if args.quick else "demo.json")
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
