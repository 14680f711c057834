"""Our work-around in a worker's start (``sweeps.patches``): applied only on CPU and only for the
DeepSpeed versions it was checked on; with it, a worker's DeepSpeed start does not import
TorchInductor, and the functions it wraps keep their names and compile when first called."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweeps import patches

ROOT = Path(__file__).resolve().parents[1]

# A worker's start, as ``sweeps.worker.Worker.start`` does it after loading: DeepSpeed's engine
# through ``init_deepspeed`` (which applies the work-arounds), under every ZeRO stage that imports
# DeepSpeed's Muon module.
PROBE = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    from deepspeed.runtime import compiler
    from sweeps.deepspeed_config import deepspeed_config
    from sweeps.worker import init_deepspeed

    dist.init_process_group("gloo", rank=0, world_size=1)
    for stage in (2, 3):
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        config = deepspeed_config(micro_batch=1, grad_accum=1, world_size=1, zero_stage=stage)
        init_deepspeed(torch.device("cpu"), model, optimizer, None, config).destroy()
    from deepspeed.runtime.zero.muon import original_muon
    print("inductor" if "torch._inductor.compile_fx" in sys.modules else "no inductor",
          original_muon.muon_update.__name__, compiler.compile.__module__)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_worker_start_on_cpu_does_not_import_torch_inductor():
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONPATH=str(ROOT), MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "no inductor muon_update sweeps.patches"


@pytest.fixture
def deepspeed_compiler(monkeypatch):
    """DeepSpeed's ``compiler`` module, restored after the test whatever the test applied."""
    from deepspeed.runtime import compiler

    monkeypatch.setattr(compiler, "compile", compiler.compile)
    return compiler


@pytest.mark.parametrize("device, version", [("cuda", "0.19.8"), ("cpu", "0.20.0"), ("cpu", "0.18.9"),
                                             ("cpu", "1.19.0"), ("cpu", "unknown")])
def test_the_muon_work_around_is_left_out_where_it_was_not_checked(device, version, deepspeed_compiler,
                                                                   monkeypatch):
    import deepspeed

    monkeypatch.setattr(deepspeed, "__version__", version)
    original = deepspeed_compiler.compile
    assert patches.apply(device) == []
    assert deepspeed_compiler.compile is original


@pytest.mark.parametrize("version", ["0.19.0", "0.19.8", "0.19.10+cpu"])
def test_the_muon_work_around_is_applied_on_cpu_for_the_checked_versions(version, deepspeed_compiler, monkeypatch):
    import deepspeed

    monkeypatch.setattr(deepspeed, "__version__", version)
    original = deepspeed_compiler.compile
    assert patches.apply("cpu") == ["defer_muon_compile"]
    assert deepspeed_compiler.compile is not original


def test_a_deferred_function_compiles_once_on_its_first_call(monkeypatch):
    import torch

    compiled = []

    def fake_compile(fn):
        compiled.append(fn)
        return lambda *args: ("compiled", fn(*args))

    monkeypatch.setattr(torch, "compile", fake_compile)

    def muon_update(x):
        return x + 1

    deferred = patches._on_first_call(muon_update)
    assert deferred.__name__ == "muon_update" and compiled == []  # nothing compiled when decorating
    assert deferred(1) == ("compiled", 2) and deferred(2) == ("compiled", 3)
    assert compiled == [muon_update]  # once


def test_a_trainer_without_datasets_leaves_out_ray_trains_dataset_callback():
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks import DatasetsCallback

    def callbacks(trainer_class, **datasets):
        trainer = trainer_class(lambda: None, scaling_config=ScalingConfig(num_workers=1), datasets=datasets or None)
        return [type(callback) for callback in trainer._create_default_callbacks()]

    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback as Cleaner

    trainer = patches.torch_trainer()
    assert issubclass(trainer, TorchTrainer) and ray.__version__.startswith("2.60")
    assert DatasetsCallback not in callbacks(trainer)
    ours = callbacks(trainer)  # the placement-group cleaner: ours, which asks the GCS (no dashboard needed)
    assert Cleaner not in ours and sum(issubclass(c, Cleaner) for c in ours) == 1
    assert [Cleaner if issubclass(c, Cleaner) else c for c in ours] == [
        c for c in callbacks(TorchTrainer) if c is not DatasetsCallback]
    assert DatasetsCallback in callbacks(trainer, train=[1, 2])  # with datasets, Ray Train's own
    assert patches.torch_trainer("2.61.0") is TorchTrainer  # outside the checked versions: left alone


def test_a_worker_group_hands_its_placement_group_to_the_cleaner_as_it_creates_it(monkeypatch):
    """A controller killed between creating a worker group's placement group and starting the group
    (Tune stopping its trial as the controller restarts its workers) leaves the placement group to
    the cleaner, which removes it: the group registers it as soon as it exists. Patched once,
    however often the controller's callback runs."""
    from types import SimpleNamespace

    from ray.train.v2._internal.execution.worker_group import worker_group as module

    created = []

    def create(self, scaling_config, context):
        created.append(context)
        return SimpleNamespace(placement_group=f"pg-{context}")

    monkeypatch.setattr(module.WorkerGroup, "_create_placement_group", create)
    registered = []
    patches.register_on_creation(registered.append)
    patches.register_on_creation(registered.append)
    handle = module.WorkerGroup._create_placement_group(None, None, 1)
    assert handle.placement_group == "pg-1" and created == [1] and registered == ["pg-1"]


# Two ranks join through ``patches.setup_process_group``; rank 0 lists its listening sockets while
# the group is up (between two barriers), so the check never races the group's end.
GROUP = textwrap.dedent("""
    import os, sys
    import psutil
    import torch.distributed as dist
    from sweeps.patches import setup_process_group
    rank = int(sys.argv[1])
    setup_process_group("gloo", rank, 2, "env://", timeout_s=60)
    dist.barrier()
    if rank == 0:
        listening = [c.laddr.ip for c in psutil.net_connections("inet")
                     if c.pid == os.getpid() and c.status == psutil.CONN_LISTEN]
        print(" ".join(sorted(set(listening))), flush=True)
    dist.barrier()
    dist.destroy_process_group()
""")


def test_the_process_group_listens_on_the_master_address_only():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    ranks = [subprocess.Popen([sys.executable, "-c", GROUP, str(rank)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
             for rank in (0, 1)]
    (out, err), _ = (ranks[0].communicate(timeout=120), ranks[1].communicate(timeout=120))
    assert [r.returncode for r in ranks] == [0, 0], err
    assert out.split() and set(out.split()) == {"127.0.0.1"}  # torch's own store would add "::"
    with pytest.raises(ValueError, match="only 'env://' is handled"):
        patches.setup_process_group("gloo", 0, 1, "tcp://127.0.0.1:1")


def test_trials_get_the_address_bound_torch_config():
    from ray.train.torch import TorchConfig

    config = patches.torch_config("gloo")
    assert isinstance(config, TorchConfig) and config.backend == "gloo"
    assert config.backend_cls.on_start is not TorchConfig().backend_cls.on_start
    assert type(patches.torch_config("gloo", "2.61.0")) is TorchConfig  # outside the checked versions
