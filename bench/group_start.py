"""Ray Train's own share of a trial's fixed cost: Tune function trials that each run a
``TorchTrainer`` whose training function does nothing but report once.

For each trial: the seconds from the trial's start to the training function's first line (worker
group start: Train's controller and helper actors, the worker processes, the process group), from
its last line to ``fit()`` returning (teardown), and how busy the machine's cores were over the
start (from /proc/stat): a start that keeps every core busy is bound by process start-up and
imports, which no cache removes. Same cluster settings as a sweep (``sweeps.cluster.connect``).

    .venv/bin/python bench/group_start.py              # 4 trials, 2 workers of 0.5 CPU
    .venv/bin/python bench/group_start.py --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import record  # noqa: E402  (bench/record.py, beside this file)


def _cpu_sample() -> tuple[float, int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return time.time(), sum(fields), fields[3] + fields[4]  # now, all jiffies, idle + iowait


class CpuMonitor(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.stopped = [], threading.Event()

    def run(self):
        while not self.stopped.wait(0.1):
            self.samples.append(_cpu_sample())

    def busy(self, start: float, end: float) -> float | None:
        window = [s for s in self.samples if start <= s[0] <= end]
        if len(window) < 2 or window[-1][1] == window[0][1]:
            return None
        return round(1 - (window[-1][2] - window[0][2]) / (window[-1][1] - window[0][1]), 2)


def empty_loop(cfg: dict) -> None:
    import ray.train

    first = time.time()
    ray.train.report({"done": 1})
    if ray.train.get_context().get_world_rank() == 0:
        Path(cfg["out"]).write_text(json.dumps({"first": first, "last": time.time()}))


def trial(config: dict) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    out = Path(config["dir"]) / f"trial{config['i']}.json"
    started = time.time()
    TorchTrainer(empty_loop, train_loop_config={"out": str(out)},
                 scaling_config=ScalingConfig(num_workers=config["workers"],
                                              resources_per_worker={"CPU": config["cpus"]}),
                 torch_config=TorchConfig(backend="gloo"),
                 run_config=RunConfig(name=f"empty{config['i']}", storage_path=config["dir"],
                                      callbacks=[TuneReportCallback()])).fit()
    inner = json.loads(out.read_text())
    out.write_text(json.dumps(dict(inner, started=started, ended=time.time())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "group_start.json")
    args = parser.parse_args()

    from sweeps import cluster

    cluster.connect()
    from ray import tune

    cpus = max(1, os.cpu_count() or 1)
    per_worker = round((cpus - 0.1) / args.workers, 2)  # as a sweep's plan shares a node
    monitor = CpuMonitor()
    monitor.start()
    with tempfile.TemporaryDirectory(prefix="group-start-") as folder:
        tune.Tuner(tune.with_resources(trial, {"CPU": 0.1}),
                   param_space={"i": tune.grid_search(list(range(args.trials))), "dir": folder,
                                "workers": args.workers, "cpus": per_worker},
                   tune_config=tune.TuneConfig(max_concurrent_trials=1),
                   run_config=tune.RunConfig(storage_path=folder, verbose=0)).fit()
        rows = [json.loads((Path(folder) / f"trial{i}.json").read_text()) for i in range(args.trials)]
    monitor.stopped.set()
    trials = [{"group_start_s": round(r["first"] - r["started"], 2), "teardown_s": round(r["ended"] - r["last"], 2),
               "cores_busy_during_start": monitor.busy(r["started"], r["first"])} for r in rows]
    for i, t in enumerate(trials):
        print(f"trial {i}: worker group start {t['group_start_s']} s (cores busy {t['cores_busy_during_start']}), "
              f"teardown {t['teardown_s']} s")
    record.write({"benchmark": "group_start", "workers": args.workers, "cpus_per_worker": per_worker,
                  "trials": trials, "machine": record.machine(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                 args.out)


if __name__ == "__main__":
    main()
