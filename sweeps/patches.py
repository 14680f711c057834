"""Work-arounds for other packages, each applied only where it was checked, each saying when it can
be dropped. A worker applies them before ``deepspeed.initialize`` (:func:`apply`); a trial builds
its worker group with :func:`torch_trainer` and :func:`torch_config`."""

from __future__ import annotations

import functools
import re

# DeepSpeed versions the Muon work-around was checked on: >= 0.19, < 0.20.
MUON_CHECKED = ((0, 19), (0, 20))
# Ray versions the dataset and process-group work-arounds were checked on: >= 2.60, < 2.61.
DATASETS_CHECKED = ((2, 60), (2, 61))


def apply(device_type: str) -> list[str]:
    """Apply the work-arounds that hold for this worker; the names of those applied."""
    return ["defer_muon_compile"] if defer_muon_compile(device_type) else []


def defer_muon_compile(device_type: str) -> bool:
    """DeepSpeed's ZeRO code imports its Muon optimizer module even when the optimizer is AdamW (to
    compare classes), and that module's ``@compiler.compile()`` decorators call ``torch.compile`` at
    import, which imports TorchInductor: 1.5 s of each worker's start on CPU. Those decorators (the
    only users of ``compiler.compile`` in the checked versions) compile on the first call instead.

    Applied only on CPU, where it was measured, and only for the DeepSpeed versions in
    ``MUON_CHECKED``. Drop it when DeepSpeed
    no longer compiles at import in its Muon module, or when ZeRO no longer imports that module for
    other optimizers: then a worker start without it does not import ``torch._inductor``.
    Returns whether it was applied."""
    import deepspeed

    if device_type != "cpu" or not _in_range(deepspeed.__version__, *MUON_CHECKED):
        return False
    from deepspeed.runtime import compiler

    compiler.compile = lambda: _on_first_call
    return True


@functools.cache
def torch_trainer(version: str | None = None):
    """Ray Train's ``TorchTrainer``; on the Ray versions in ``DATASETS_CHECKED``, a subclass that
    leaves out Ray Train's dataset callback when the trainer has no datasets (a sweep's never has).
    That callback starts a dataset-manager actor, one more process per trial, and sends Ray Data's
    context to every worker, which imports Ray Data there: about 0.8 s of a trial's start on 2
    CPU cores. Drop it when Ray Train skips that callback without datasets."""
    import ray
    from ray.train.torch import TorchTrainer

    if not _in_range(version or ray.__version__, *DATASETS_CHECKED):
        return TorchTrainer
    from ray.train.v2._internal.callbacks import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    class Trainer(TorchTrainer):
        def _create_default_callbacks(self):
            callbacks = [_gcs_cleaner_callback() if type(c) is PlacementGroupCleanerCallback else c
                         for c in super()._create_default_callbacks()]
            if self.datasets:
                return callbacks
            return [callback for callback in callbacks if not isinstance(callback, DatasetsCallback)]

    return Trainer


def _gcs_cleaner_callback():
    """Ray Train's placement-group cleaner callback, with two fixes.

    Its cleaner asks the GCS whether the trial's controller is alive. Ray's own asks the State API,
    which needs the dashboard: on a local cluster started without one (``sweeps.cluster.connect``)
    it never learns that the controller died, so a trial that Tune stops (ASHA's early stop, which
    ends the trial's process and its controller with it) kept its worker group's CPUs reserved and
    the next trial's worker group never started.

    And a worker group's placement group is handed to the cleaner as soon as it is created, not
    once the group has started. When Tune stops a trial (ASHA, or the last epoch reaching ASHA's
    ``max_t``), its controller outlives its workers by a moment, sees them gone and starts a new
    group; killed before that group had started, it left the new placement group to no one, and
    the group's CPUs stayed reserved until the sweep's driver exited: every later trial, and the
    next sweep of the same driver, waited for them forever. Checked on the versions in
    ``DATASETS_CHECKED``; drop it when Ray's cleaner works without the dashboard and Ray Train
    registers a placement group when it creates it."""
    from ray.train.v2._internal.callbacks import placement_group_callback as module

    class Callback(module.PlacementGroupCleanerCallback):
        def after_controller_start(self, train_run_context):  # runs in the trial's controller process
            module.PlacementGroupCleaner = _gcs_checked_cleaner()
            super().after_controller_start(train_run_context)
            register_on_creation(self.register)

        def register(self, placement_group) -> None:
            """Hand ``placement_group`` to the cleaner (when there is one): removed if the controller dies."""
            if self._cleaner is not None:
                import ray

                ray.get(self._cleaner.register_placement_group.remote(placement_group))

    return Callback()


def register_on_creation(register) -> None:
    """In this process (a trial's controller), have every worker group call ``register`` with its
    placement group as soon as it creates it, before it waits for it."""
    from ray.train.v2._internal.execution.worker_group import worker_group as module

    create = module.WorkerGroup._create_placement_group
    create = getattr(create, "unregistered", create)  # patched once, whatever the number of calls

    def create_and_register(self, *args, **kwargs):
        handle = create(self, *args, **kwargs)
        register(handle.placement_group)
        return handle

    create_and_register.unregistered = create
    module.WorkerGroup._create_placement_group = create_and_register


@functools.cache
def _gcs_checked_cleaner():
    from ray.train.v2._internal.execution.controller import placement_group_cleaner as module

    class Cleaner(module.PlacementGroupCleaner):
        def __init__(self, *args, **kwargs):  # runs in the cleaner's own process
            module.is_actor_alive = actor_alive
            super().__init__(*args, **kwargs)

    return Cleaner


def actor_alive(actor_id: str, timeout=None) -> bool:
    """Whether the actor is not dead, from the GCS's actor table (no dashboard needed)."""
    from ray._private import state

    info = state.actors(actor_id=actor_id)
    return bool(info) and info.get("State") not in ("DEAD", 4)


def torch_config(backend: str, version: str | None = None):
    """Ray Train's ``TorchConfig`` for ``backend``; on the Ray versions in ``DATASETS_CHECKED``, one
    whose process group listens on the master address only (:func:`setup_process_group`)."""
    import ray
    from ray.train.torch import TorchConfig

    if not _in_range(version or ray.__version__, *DATASETS_CHECKED):
        return TorchConfig(backend=backend)
    return _address_bound_config()(backend=backend)


@functools.cache
def _address_bound_config():
    from ray.train.torch import TorchConfig
    from ray.train.torch import config as torch_setup

    class Backend(torch_setup._TorchBackend):
        def on_start(self, worker_group, backend_config):  # runs in Ray Train's controller
            torch_setup._setup_torch_process_group = setup_process_group
            super().on_start(worker_group, backend_config)

    class Config(TorchConfig):
        @property
        def backend_cls(self):
            return Backend

    return Config


def setup_process_group(backend: str, world_rank: int, world_size: int, init_method: str, timeout_s: int = 1800):
    """``torch.distributed.init_process_group`` as Ray Train's setup calls it, with rank 0's rendezvous
    store listening on the master address only. Left to itself, torch's TCP store listens on every
    interface (``::``) whatever ``MASTER_ADDR`` says, so a local cluster kept on 127.0.0.1 had one
    port open to the network per trial. Drop it when torch's store binds to the address it is given,
    or Ray Train lets a trial pass its own store."""
    import datetime
    import os
    import socket

    import torch.distributed as dist

    if init_method != "env://":
        raise ValueError(f"setup_process_group: init_method {init_method!r}; only 'env://' is handled")
    address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    timeout = datetime.timedelta(seconds=timeout_s)
    listener = None
    if world_rank == 0:
        listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen()
    store = dist.TCPStore(address, port, world_size, world_rank == 0, timeout, wait_for_workers=False,
                          master_listen_fd=listener.fileno() if listener else None)
    dist.init_process_group(backend=backend, store=store, rank=world_rank, world_size=world_size, timeout=timeout)


def hand_over_last_result(timeout_s: float = 600, version: str | None = None) -> bool:
    """Called by a trial function once its worker group has finished, before it returns: wait until
    Tune has taken the group's last result. On the Ray versions in ``DATASETS_CHECKED``, Train's
    ``TuneReportCallback`` passes each result through a one-item queue that the trial's actor reads
    only when the driver asks for the next result, and a trial function that returns puts its own
    end marker in the one-item result queue first: the actor then blocks forever putting the last
    result behind it. A driver slower than the group's teardown (callbacks that log to a tracker,
    a loaded machine) meets it, and the sweep never ends: on 2 CPU cores, a sweep reporting to MLflow
    and W&B did every time. Drop it when the
    trial's actor drains the callback's queue before the end marker. Returns whether it waited."""
    import time

    import ray
    from ray.train._internal.session import get_session

    session = get_session()
    queue = getattr(session, "_inter_actor_queue", None)
    if not _in_range(version or ray.__version__, *DATASETS_CHECKED) or queue is None:
        return False
    deadline = time.monotonic() + timeout_s
    stopping = getattr(session, "stop_event", None)

    def waiting(until) -> bool:
        return not until() and time.monotonic() < deadline and not (stopping and stopping.is_set())

    while waiting(queue.empty):  # the driver has not asked for the last result yet
        time.sleep(0.2)
    time.sleep(0.5)  # the actor took it: it hands it on to the result queue within microseconds
    while waiting(session.result_queue.empty):
        time.sleep(0.2)
    return True


def _in_range(version: str, low: tuple, high: tuple) -> bool:
    match = re.match(r"(\d+)\.(\d+)", version)
    return bool(match) and low <= tuple(int(part) for part in match.groups()) < high


def _on_first_call(fn):
    """``fn`` compiled with ``torch.compile`` when first called (its name kept)."""
    compiled = None

    @functools.wraps(fn)
    def call(*args, **kwargs):
        nonlocal compiled
        if compiled is None:
            import torch

            compiled = torch.compile(fn)
        return compiled(*args, **kwargs)
    return call
