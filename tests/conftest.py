"""Test-wide settings: offline, loopback only, deterministic and single-threaded where it matters."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def ray_cluster(unlearn_cache):
    """A local Ray cluster, bound to loopback, for the session's in-process sweeps."""
    import ray

    started = _connect()
    yield
    if started:
        ray.shutdown()


def pytest_collection_modifyitems(items):
    """The tests of the session's tiny sweep run last, so that the sweep runs while the others do."""
    uses = [item for item in items if "tiny_sweep" in getattr(item, "fixturenames", ())]
    items[:] = [item for item in items if item not in uses] + uses


@pytest.fixture(scope="session")
def tiny_prepared(unlearn_cache):
    """The tiny spec's target and oracle, prepared once for the session into its cache."""
    from benchmarks.prepare import Recipe, prepare
    from sweeps import spec as specs

    spec = specs.load(ROOT / "sweeps" / "specs" / "tiny.yaml")
    return prepare(spec.model.base, spec.benchmark.build(), Recipe(**spec.model.prepare), cache=unlearn_cache,
                   progress=lambda message: None)


@pytest.fixture(scope="session", autouse=True)
def _tiny_sweep_job(request, tmp_path_factory, unlearn_cache):
    """When a collected test needs the tiny sweep, ``unlearn demo --quick`` is submitted with
    ``ray job submit`` to a ``ray start --head`` cluster on loopback as the session starts, and
    runs while the tests that do not need it run. Nothing starts otherwise. The job's preparation
    finds the target and oracle in the session's cache, as ``test_prepare_eval.py`` does."""
    if not any("tiny_sweep" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    import sys

    from helpers.ray_job import Background

    request.getfixturevalue("tiny_prepared")  # before the job, which then finds them in the cache
    storage = tmp_path_factory.mktemp("demo")
    job = Background("--working-dir", str(ROOT), "--", sys.executable, "-m", "sweeps.cli", "demo", "--quick",
                     "--storage", str(storage))
    yield storage, job
    job.stop()


@pytest.fixture(scope="session")
def tiny_sweep(_tiny_sweep_job):
    """``unlearn demo --quick`` (the tiny spec: preparation, Ray Tune trials of DeepSpeed worker
    groups, the report), run once for the session as a Ray job: its directory, report and the
    job's output."""
    storage, background = _tiny_sweep_job
    job = background.result()
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    report = storage / "demo" / "report.html"
    return {"dir": report.parent, "report": report, "said": job.stdout.splitlines(), "job": job}
