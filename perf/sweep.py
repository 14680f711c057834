"""Fixed cost per trial and sweep throughput, from a sweep's own records.

Each trial writes ``timing.json`` (when the trial function started and ended) and, with every
epoch's row of ``metrics.jsonl``, the worker group's start (``group_start_s``), loading (``load_s``),
DeepSpeed's initialisation (``ds_init_s``) and its cumulative training, evaluation and checkpoint
seconds; the sweep writes ``timing.json`` around its trials. From those:

- fixed cost of a trial = span − training − evaluation − checkpoints (worker-group start, loading,
  DeepSpeed initialisation, teardown and Ray Train's bookkeeping);
- teardown = the trial's end − its last record − the last report's persisting of the model
  (``final_report.json``, counted with the checkpoints);
- trials per hour = trials / (sweep's trial phase) × 3600;
- sweep overhead = (trial phase − Σ trial spans) / trial phase: time no trial runs (Tune's
  scheduling between trials and between the methods' Tuners);
- busy share = Σ (training + evaluation + checkpoints) / trial phase.

    .venv/bin/python perf/sweep.py --run demo        # runs sweeps/specs/demo.yaml (warm caches), then deletes it
    .venv/bin/python perf/sweep.py --dir runs/demo   # analyses an existing sweep
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import record  # noqa: E402  (perf/record.py, beside this file)

from reports.record import FINAL_REPORT, OK, REFERENCES, TIMING, TRIAL_PREFIX, read_json, read_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def trial_costs(sweep_dir: Path) -> list[dict]:
    out = []
    for trial_dir in sorted(sweep_dir.glob(f"*/{TRIAL_PREFIX}*")):
        rows, span = read_rows(trial_dir), read_json(trial_dir / TIMING)
        if not rows or span is None or rows[-1].get("status") != OK:
            continue
        last = rows[-1]
        wall = span["ended"] - span["started"]
        # the last report persists the model after the last row was written: its own side record
        final = read_json(trial_dir / FINAL_REPORT)
        persist = final["final_report_s"] if final else 0.0
        checkpoint = last.get("checkpoint_s", 0.0) + persist
        work = last["train_s"] + last["eval_s"] + checkpoint
        out.append({"trial": trial_dir.name, "method": last["method"], "span_s": round(wall, 2),
                    "started": span["started"], "ended": span["ended"],
                    "group_start_s": last.get("group_start_s"), "imports_s": last.get("imports_s"),
                    "load_s": last.get("load_s"),
                    "ds_init_s": last.get("ds_init_s"), "train_s": last["train_s"], "eval_s": last["eval_s"],
                    "checkpoint_s": round(checkpoint, 3),
                    "teardown_s": round(span["ended"] - last["timestamp"] - persist, 2),
                    "fixed_s": round(wall - work, 2), "eval_share": round(last["eval_s"] / wall, 3)})
    return out


def summarise(sweep_dir: Path) -> dict:
    trials = trial_costs(sweep_dir)
    if not trials:
        raise SystemExit(f"no finished trial with timing records under {sweep_dir}")
    # absent when the sweep was resumed: first start to last end
    phase = read_json(sweep_dir / TIMING) or {
        "trials_started": min(t["started"] for t in trials), "trials_ended": max(t["ended"] for t in trials)}
    wall = phase["trials_ended"] - phase["trials_started"]

    def median(key: str) -> float | None:  # None for records older than the field
        values = [t[key] for t in trials if t.get(key) is not None]
        return round(statistics.median(values), 2) if values else None

    spans = sum(t["span_s"] for t in trials)
    busy = sum(t["train_s"] + t["eval_s"] + (t["checkpoint_s"] or 0) for t in trials)
    refs = sweep_dir / REFERENCES
    return {
        # written once before the first trial and never again (workers only read it)
        "references_once": refs.is_file() and refs.stat().st_mtime <= phase["trials_started"],
        "trials": len(trials), "trial_phase_s": round(wall, 1), "trials_per_hour": round(len(trials) / wall * 3600, 1),
        "sweep_overhead": round((wall - spans) / wall, 3), "busy_share": round(busy / wall, 3),
        "median": {k: median(k) for k in ("span_s", "fixed_s", "group_start_s", "imports_s", "load_s", "ds_init_s",
                                          "teardown_s", "train_s", "eval_s", "checkpoint_s", "eval_share")},
        "per_trial": trials,
    }


def run(spec: str) -> Path:
    storage = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    path = ROOT / "sweeps" / "specs" / f"{spec}.yaml"
    subprocess.run([str(Path(sys.executable).parent / "unlearn"), "sweep", str(path), "--storage", str(storage)],
                   check=True, env=dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1")))
    return next(p.parent for p in storage.glob("*/spec.yaml"))


def main() -> None:
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--run", help="a spec of sweeps/specs to run first (demo, tiny)")
    group.add_argument("--dir", help="an existing sweep directory")
    parser.add_argument("--keep", action="store_true", help="with --run: keep the sweep's directory (trained models)")
    args = parser.parse_args()
    sweep_dir = run(args.run) if args.run else Path(args.dir)
    result = {"benchmark": "sweep", "sweep": sweep_dir.name, **summarise(sweep_dir), "machine": record.machine(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if args.run and not args.keep:  # a model per trial: gigabytes
        shutil.rmtree(sweep_dir.parent, ignore_errors=True)
    m = result["median"]
    print(f"{result['trials']} trials, {result['trials_per_hour']} trials/hour, sweep overhead "
          f"{result['sweep_overhead']:.1%}, busy share {result['busy_share']:.1%}")
    print(f"references computed once before the trials: {result['references_once']}")
    print(f"median per trial: span {m['span_s']} s = train {m['train_s']} + eval {m['eval_s']} + checkpoints "
          f"{m['checkpoint_s']} + fixed {m['fixed_s']} (group start {m['group_start_s']}, imports {m['imports_s']}, "
          f"load {m['load_s']}, DeepSpeed init {m['ds_init_s']}, teardown {m['teardown_s']}); "
          f"eval share {m['eval_share']:.0%}")
    record.write(result, ROOT / "perf" / "results" / f"sweep-{sweep_dir.name}.json")


if __name__ == "__main__":
    main()
