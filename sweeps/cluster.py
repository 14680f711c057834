"""Connecting to Ray: a local cluster on loopback only (token auth as Ray sets it up), or an
existing cluster; and the resource arithmetic that keeps a trial from waiting forever."""

from __future__ import annotations

import dataclasses
import math
import os

from sweeps.spec import MIN_WORKER_CPUS, Scaling, SpecError, SweepSpec

# Passed to every trial and worker: offline switches, caches, the shared directory, HF_TOKEN, and
# the fault-injection hook of the tests (``sweeps.faults``).
# Ray Train's controller polls its worker group every 2 s by default: a trial's end (and its next
# step) waits for that poll. Trials here are short, so poll often (cheap: one actor call).
TRAIN_DEFAULTS = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
# A local cluster is one machine that nothing drains: no preemption watcher (one actor, and one
# more process start, per trial).
LOCAL_DEFAULTS = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
# Ray gives the head node one unit of this resource: a trial asking for a sliver of it runs there.
HEAD, HEAD_SHARE = "node:__internal_head__", 0.001
FORWARDED = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME", "HF_TOKEN", "DS_ACCELERATOR",
             "RAY_USAGE_STATS_ENABLED", "UNLEARN_CACHE", "UNLEARN_SHARED_DIR", "PYTHONPATH", "UNLEARN_FAIL_AT")


def check_storage(storage: str, nodes: int) -> None:
    """On several nodes, results and checkpoints must go to a directory every node sees."""
    if "://" in storage:
        raise SpecError(f"storage {storage!r}: give a directory on a shared mount (e.g. /mnt/shared/...), "
                        f"not a URI")
    shared = os.environ.get("UNLEARN_SHARED_DIR")
    if nodes > 1 and not (shared and os.path.abspath(storage).startswith(os.path.abspath(shared) + os.sep)):
        raise SpecError(f"storage {storage!r} is a local path but the cluster has {nodes} nodes; use a directory "
                        f"under the shared mount named by UNLEARN_SHARED_DIR ({shared or 'not set'})")


def alive_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def this_node() -> dict:
    """The Ray node this process runs on: its ``node_id`` and ``node_ip``."""
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}


def head_node(kind: str) -> float:
    """How much of a resource (``"CPU"``) the head node has; 0 without a live head."""
    import ray

    heads = [n for n in ray.nodes() if n.get("Alive") and HEAD in n.get("Resources", {})]
    return heads[0]["Resources"].get(kind, 0.0) if heads else 0.0


def trial_resources(scaling: Scaling, concurrent: int, head_cpus: float) -> dict:
    """The Ray resources of a trial's own actor (Tune's function trial; Ray Train's controller runs
    beside it): ``trial_cpus``, on the head node when the head has CPUs for ``concurrent`` of them.
    A worker node lost then costs a trial only its worker group, which Ray Train starts again on the
    nodes left, from the trial's last checkpoint (``failure.max_retries``); a trial actor on the
    lost node would end its trial. On a head without those CPUs the trials go where they fit."""
    resources = {"CPU": scaling.trial_cpus}
    if head_cpus + 1e-9 >= scaling.trial_cpus * concurrent:
        resources[HEAD] = HEAD_SHARE
    return resources


def loopback_environment() -> None:
    """Before ``import ray``: keep a local cluster on 127.0.0.1, no usage reporting."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if not _has_gpu() else os.environ.get("DS_ACCELERATOR", "cuda"))


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def connect(address: str | None = None, num_cpus: int | None = None, temp_dir: str | None = None) -> dict:
    """``ray.init`` on ``address``, or a new local cluster bound to 127.0.0.1. Returns the cluster's
    resources."""
    loopback_environment()
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS")  # inside `ray job submit` the cluster is given
    defaults = TRAIN_DEFAULTS if address else {**TRAIN_DEFAULTS, **LOCAL_DEFAULTS}
    env = {"env_vars": {**defaults, **{k: os.environ[k] for k in FORWARDED + tuple(defaults) if k in os.environ}}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.1",
                 runtime_env=env, log_to_driver=False, _temp_dir=temp_dir)
    return ray.cluster_resources()


def largest_node(kind: str) -> float:
    import ray

    return max((n.get("Resources", {}).get(kind, 0.0) for n in ray.nodes() if n.get("Alive")), default=0.0)


def bundles(spec: SweepSpec, total: dict, node_cpus: float, node_gpus: float) -> Scaling:
    """The Ray resources of a trial: the scaling section with ``cpus_per_worker`` resolved, after
    checking that one trial (its actor and its worker group) fits.

    Defaults on 2 CPUs (a 1-CPU trial actor and 1-CPU workers) never start and never say why; so
    the trial actor takes ``trial_cpus`` and the workers share the rest of a node, each at least
    ``MIN_WORKER_CPUS`` (with ``use_gpu``: one CPU and one GPU each). A trial that cannot have that
    is refused here, before anything runs: ``(node CPUs − trial_cpus) / workers ≥ MIN_WORKER_CPUS``,
    ``trial_cpus + workers · cpus_per_worker ≤`` the cluster's CPUs, ``workers ≤`` its GPUs."""
    scaling = spec.scaling
    field, workers = most_workers(spec)
    cpus = scaling.cpus_per_worker
    if cpus is None:
        share = (node_cpus - scaling.trial_cpus) / workers if not scaling.use_gpu else 1.0
        cpus = math.floor(share * 100) / 100
        if cpus < MIN_WORKER_CPUS:
            one_node = total.get("CPU", 0) <= node_cpus
            has = f"the cluster has {node_cpus:g}" if one_node else \
                f"the largest node has {node_cpus:g} (set scaling.cpus_per_worker to spread the workers over nodes)"
            raise SpecError(f"{field}: {workers} needs {workers} × {MIN_WORKER_CPUS:g} CPUs but {has}, beside "
                            f"{scaling.trial_cpus:g} for the trial; lower {field}")
    need_cpu = scaling.trial_cpus + workers * cpus
    if need_cpu > total.get("CPU", 0) + 1e-9 or cpus > node_cpus:
        raise SpecError(f"{field}: a trial needs {need_cpu:g} CPUs ({scaling.trial_cpus:g} for the trial + {workers} "
                        f"workers × {cpus:g}) but the cluster has {total.get('CPU', 0):g} (largest node "
                        f"{node_cpus:g}); lower {field} or scaling.cpus_per_worker")
    if scaling.use_gpu:
        need_gpu = workers * scaling.gpus_per_worker
        if need_gpu > total.get("GPU", 0) or scaling.gpus_per_worker > node_gpus:
            raise SpecError(f"{field}: a trial needs {need_gpu:g} GPUs ({workers} workers × "
                            f"{scaling.gpus_per_worker:g}) but the cluster has {total.get('GPU', 0):g}; lower "
                            f"{field} or set use_gpu: false")
    return dataclasses.replace(scaling, cpus_per_worker=cpus)


def most_workers(spec: SweepSpec) -> tuple[str, int]:
    """The largest worker group a trial of the sweep asks for, and the field that asks for it."""
    found = [("scaling.workers", spec.scaling.workers)]
    found += [(f"methods.{m}.workers", _max_option(spec.space(m).get("workers"))) for m in spec.methods]
    return max(found, key=lambda item: item[1])


def _max_option(value) -> int:
    if isinstance(value, dict):
        return max(v for v in next(iter(value.values())) if isinstance(v, int))
    return value if isinstance(value, int) else 0


def task_resources(spec: SweepSpec, scaling: Scaling, node_cpus: float) -> dict:
    """The Ray resources of the work done once before any trial (preparation, references): placed
    like a trial worker, never in the driver. With ``use_gpu`` one worker's GPU and CPUs; on CPU the
    CPUs of one worker group (no trial runs yet), within one node. ``scaling`` is ``bundles``'s."""
    if scaling.use_gpu:
        return {"num_cpus": scaling.cpus_per_worker, "num_gpus": scaling.gpus_per_worker}
    return {"num_cpus": min(node_cpus, most_workers(spec)[1] * scaling.cpus_per_worker), "num_gpus": 0}
