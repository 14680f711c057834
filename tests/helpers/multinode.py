"""A Ray cluster of several nodes on one machine, all bound to 127.0.0.1: a head and worker nodes,
each a raylet of its own with its own resources, started with ``ray.cluster_utils.Cluster`` (Ray's
own way to run several nodes on one machine; ``ray start --address`` refuses a second node on a
machine kept to loopback). :meth:`LocalCluster.remove` kills every process of one node, as when a
machine is lost. The drivers are ``unlearn sweep … --address`` in subprocesses, as on a cluster's
head."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from helpers.ray_job import free_port
from helpers.sweep_specs import own_benchmark
from sweeps import faults

ROOT = Path(__file__).resolve().parents[2]


class LocalCluster:
    """A head with ``head_cpus`` and one worker node per entry of ``worker_cpus``, in a Ray temporary
    directory of their own (``temp_dir``). Nothing outside it is touched: Ray's "current cluster"
    address file (what ``address="auto"`` finds) is not written, so no other driver of this machine
    connects here by chance."""

    def __init__(self, head_cpus: int = 1, worker_cpus: tuple = (2, 2)):
        from unittest import mock

        import ray._private.utils
        import ray.experimental.internal_kv as internal_kv
        from ray.cluster_utils import Cluster

        self.temp_dir = tempfile.mkdtemp(prefix="raynodes", dir="/tmp")
        self.workers = {}
        node = {"node_ip_address": "127.0.0.1"}
        # The nodes' processes, and the trials' workers they start, inherit this environment: no
        # preemption watcher (nothing drains these nodes; a lost node is killed, not drained).
        # Starting a node in this process also points the process's internal key-value client (what
        # Tune and Train of an in-process driver use) at the new GCS: kept as it was.
        with mock.patch.dict(os.environ, {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}), \
                mock.patch.object(ray._private.utils, "write_ray_address", lambda *args, **kwargs: None), \
                mock.patch.object(internal_kv, "global_gcs_client", internal_kv.global_gcs_client), \
                mock.patch.object(internal_kv, "_initialized", internal_kv._initialized):
            self._cluster = Cluster(initialize_head=True, connect=False, shutdown_at_exit=True, head_node_args=dict(
                node, num_cpus=head_cpus, include_dashboard=False, temp_dir=self.temp_dir,
                dashboard_agent_listen_port=free_port()))
            self.head = self._cluster.head_node
            try:
                for cpus in worker_cpus:
                    added = self._cluster.add_node(num_cpus=cpus, dashboard_agent_listen_port=free_port(), **node)
                    self.workers[added.node_id] = added
                self._cluster.wait_for_nodes()
            except BaseException:
                self.shutdown()
                raise

    @property
    def address(self) -> str:
        return self._cluster.address

    def processes(self, node=None) -> list[psutil.Process]:
        """Every live process of ``node`` (default: of every node), the workers its raylet started
        included."""
        nodes = [node] if node is not None else [self.head, *self.workers.values()]
        found = {}
        for each in nodes:
            for infos in each.all_processes.values():
                for info in infos:
                    with contextlib.suppress(psutil.Error):
                        process = psutil.Process(info.process.pid)
                        found[process.pid] = process
                        found.update((child.pid, child) for child in process.children(recursive=True))
        return [p for p in found.values() if _alive(p)]

    def remove(self, node_id: str) -> list[psutil.Process]:
        """Kill every process of the worker node ``node_id`` (SIGKILL, no drain: a lost machine);
        returns the processes it had, all ended."""
        node = self.workers.pop(node_id)
        had = self.processes(node)
        self._cluster.remove_node(node, allow_graceful=False)
        for process in had:  # its workers end with their raylet; none may outlive the node
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(had, timeout=60)
        return had

    def shutdown(self) -> None:
        """End every node, then any process of theirs left (a worker whose raylet went first)."""
        had = self.processes() if self._cluster.head_node is not None else []
        for node in list(self.workers.values()):
            self._cluster.remove_node(node, allow_graceful=False)
        self.workers.clear()
        if self._cluster.head_node is not None:
            self._cluster.remove_node(self._cluster.head_node, allow_graceful=False)
        for process in had:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(had, timeout=60)


# A small benchmark of its own, prepared in one epoch by the sweep (a cache key no other test uses);
# two GA trials (two learning rates) at once, 2 epochs of one worker each, KL evaluated every epoch,
# one retry.
SPEC = own_benchmark("multinode", 9, {"ga": {"lr": {"grid": [1.0e-3, 2.0e-3]}}}, epochs=2,
                     scaling={"workers": 1, "zero_stage": 2}, failure={"max_retries": 1}, max_concurrent_trials=2)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def spec(where: Path, name: str) -> Path:
    path = where / f"{name}.yaml"
    path.write_text(yaml.safe_dump(dict(SPEC, name=name)))
    return path


def sweep(spec_path: Path, storage: Path, address: str, shared: Path, log: Path,
          fail_at: str | None = None) -> subprocess.Popen:
    """``unlearn sweep SPEC --storage STORAGE --address ADDRESS`` with ``UNLEARN_SHARED_DIR=shared``
    (and the fault hook ``fail_at``), its output in ``log``."""
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env["UNLEARN_SHARED_DIR"] = str(shared)
    if fail_at:
        env[faults.ENV] = fail_at
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "sweeps.cli", "sweep", str(spec_path), "--storage",
                                 str(storage), "--address", address], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_marker(path: Path, driver: subprocess.Popen, log: Path, timeout: float = 900) -> dict:
    """The fault hook's marker once a worker has written it (the worker then waits to be killed);
    an error if the driver ends first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file():
            text = path.read_text()
            if text.strip():
                return json.loads(text)
        if driver.poll() is not None:
            raise AssertionError(f"the sweep ended ({driver.returncode}) before the fault hook fired:\n"
                                 + log.read_text()[-3000:])
        time.sleep(0.2)
    raise AssertionError(f"the fault hook never fired:\n{log.read_text()[-3000:]}")


def files_under(root: Path, wanted) -> list[Path]:
    """Every path under ``root`` whose name ``wanted(name)`` accepts."""
    if not root.is_dir():
        return []
    return [path for path in root.rglob("*") if wanted(path.name)]


def is_checkpoint_or_record(name: str) -> bool:
    """A checkpoint directory, model or optimizer weights, a DeepSpeed state, or a trial's record."""
    return (name.startswith(("checkpoint_", "mp_rank_")) or name.endswith((".safetensors", ".pt", ".bin"))
            or "optim_states" in name or name == "metrics.jsonl")
