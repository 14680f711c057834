"""Ray Train's own share of a trial's fixed cost: Tune function trials (one CPU each) that run a
``TorchTrainer`` of 2 workers (half a CPU each) whose training function only reports once.

Per trial: seconds from the trial's start to the training function's first line (Train's
controller and helper actors, the worker processes, the process group), from its last line to
``fit()`` returning (teardown), and how busy the cores were over the start (/proc/stat). A start
that keeps every core busy is bound by process start-up and imports, which no cache removes.
Ray Train's settings and trainer are a sweep's (``sweeps.cluster``, ``sweeps.patches``).

    .venv/bin/python perf/group_start.py          # 4 trials; writes perf/results/group_start.json
"""

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweeps.cluster import LOCAL_DEFAULTS, TRAIN_DEFAULTS  # noqa: E402

for key, value in {**TRAIN_DEFAULTS, **LOCAL_DEFAULTS, "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(key, value)

import ray  # noqa: E402
import record  # noqa: E402  (perf/record.py, beside this file)
from ray import tune  # noqa: E402


def loop(cfg):
    import ray.train

    first = time.time()
    ray.train.report({"x": 1})
    if ray.train.get_context().get_world_rank() == 0:
        with open(cfg["out"], "a") as f:
            f.write(json.dumps({"t0": cfg["t0"], "first": first, "last": time.time()}) + "\n")


def trial(config):
    from ray.train import RunConfig, ScalingConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    from sweeps.patches import torch_config, torch_trainer

    t0 = time.time()
    torch_trainer()(loop, train_loop_config={"out": config["out"], "t0": t0},
                 scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
                 torch_config=torch_config("gloo"),
                 run_config=RunConfig(name=f"empty{config['i']}", storage_path=config["store"],
                                      callbacks=[TuneReportCallback()])).fit()
    with open(config["out"], "a") as f:
        f.write(json.dumps({"ended": time.time()}) + "\n")


def main():
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    store = tempfile.mkdtemp(prefix="group-start-")
    out = os.path.join(store, "times.jsonl")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("RAY_TRAIN")}})
    samples = []

    def sample():
        while True:
            fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
            samples.append((time.time(), sum(fields), fields[3] + fields[4]))
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    tune.Tuner(tune.with_resources(trial, {"CPU": 1}),
               param_space={"i": tune.grid_search(list(range(trials))), "out": out, "store": store},
               tune_config=tune.TuneConfig(max_concurrent_trials=1),
               run_config=tune.RunConfig(storage_path=store, verbose=0)).fit()

    def busy(start, end):
        window = [s for s in samples if start <= s[0] <= end]
        if len(window) < 2 or window[-1][1] == window[0][1]:
            return None
        return round(1 - (window[-1][2] - window[0][2]) / (window[-1][1] - window[0][1]), 2)

    rows, current = [], {}
    for line in open(out):
        current.update(json.loads(line))
        if "ended" in current:
            rows.append({"group_start_s": round(current["first"] - current["t0"], 2),
                         "teardown_s": round(current["ended"] - current["last"], 2),
                         "cores_busy_during_start": busy(current["t0"], current["first"])})
            current = {}
    for i, r in enumerate(rows):
        print(f"trial {i}: worker group start {r['group_start_s']} s (cores busy {r['cores_busy_during_start']}), "
              f"teardown {r['teardown_s']} s")
    record.write({"benchmark": "group_start", "workers": 2, "cpus_per_worker": 0.5, "trials": rows,
                  "machine": record.machine(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                 ROOT / "perf" / "results" / "group_start.json")
    shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
