"""Test-wide settings: offline, loopback only, deterministic and single-threaded where it matters."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


import pytest


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine they cost a lot.
    A module that evaluates tiny models uses it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def unlearn_cache(tmp_path_factory):
    """One cache of prepared models for every sweep test of the session (UNLEARN_CACHE)."""
    path = tmp_path_factory.mktemp("unlearn-cache")
    previous = os.environ.get("UNLEARN_CACHE")
    os.environ["UNLEARN_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("UNLEARN_CACHE", None)
    else:
        os.environ["UNLEARN_CACHE"] = previous


def _connect() -> bool:
    """Start a local Ray cluster on loopback unless one is up; whether this call started it."""
    import tempfile

    import ray

    from sweeps import cluster

    started = not ray.is_initialized()
    cluster.connect(num_cpus=2, temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    return started


@pytest.fixture(scope="module")
def ray_cluster(unlearn_cache):
    """A local Ray cluster, bound to loopback, for a module's in-process sweeps."""
    import ray

    started = _connect()
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, unlearn_cache):
    """``unlearn demo --quick`` (the tiny spec: preparation, Ray Tune trials of DeepSpeed worker
    groups, the report) run once for the session: its directory, report and progress lines."""
    import ray

    from sweeps import demo

    started = _connect()
    said = []
    report = demo.main(storage=str(tmp_path_factory.mktemp("demo")), quick=True, progress=said.append)
    if started:
        ray.shutdown()
    return {"dir": report.parent, "report": report, "said": said}
