"""Test-wide settings: offline, loopback only, deterministic and single-threaded where it matters."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
# Tiny models gain nothing from intra-op threads, and with the session's sweeps running beside the
# tests (see ``_background``) threads that wait for a busy core cost a lot. Ray workers set their own.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The session runs several Ray clusters on two cores at once (its own, and the background sweeps'
# below), so a Ray process can wait seconds for a core. Ray's own timeouts for an unresponsive
# raylet (one health check) and an unreachable GCS are lengthened for every cluster the session
# starts (the variables are inherited); a killed node is still found at once (its checks are
# refused, not slow).
os.environ.setdefault("RAY_health_check_timeout_ms", "30000")
os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", "300")


from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_REAPER = []


def pytest_configure(config):
    """Before anything starts: every process the session starts ends with it (``helpers/reaper.py``)."""
    from helpers import reaper

    _REAPER.append(reaper.start())


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


BACKGROUND = ("tiny_sweep", "fault_scenario", "zoo_sweep")  # fixtures whose work starts with the session


def _needs(item) -> tuple:
    return tuple(name for name in BACKGROUND if name in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(items):
    """The tests of the work started in the background run last, in the order it is done, so that it
    runs while the others do; after them the tests that start Ray clusters of their own in this
    process (``own_cluster``): starting a node re-points process-wide Ray state at it, which
    ``helpers.multinode`` puts back, and nothing of the session's cluster runs after them anyway."""
    items.sort(key=lambda item: [item.get_closest_marker("own_cluster") is not None]
               + [name in _needs(item) for name in reversed(BACKGROUND)])


@pytest.fixture(scope="session")
def tracked_sweep(ray_cluster, tmp_path_factory):
    """The sweep that reports to MLflow and W&B while the driver loads no model (``helpers/tracked.py``)."""
    from helpers import tracked

    return tracked.run(tmp_path_factory.mktemp("tracked"))


@pytest.fixture(scope="session")
def tiny_prepared(unlearn_cache):
    """The tiny spec's target and oracle, prepared once for the session into its cache (on every
    core: nothing else runs yet)."""
    import torch

    from benchmarks.prepare import Recipe, prepare
    from sweeps import spec as specs

    spec = specs.load(ROOT / "sweeps" / "specs" / "tiny.yaml")
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        return prepare(spec.model.base, spec.benchmark.build(), Recipe(**spec.model.prepare), cache=unlearn_cache,
                       progress=lambda message: None)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _background(request, tmp_path_factory, unlearn_cache):
    """When a collected test needs it, the session's expensive work starts as the session starts and
    runs while the tests that do not need it run: ``unlearn demo --quick`` submitted with ``ray job
    submit`` to a ``ray start --head`` cluster on loopback, then the fault scenario
    (``helpers/fault_scenario.py``); beside them the zoo spec (``helpers/zoo.py``). All find the tiny
    target and oracle in the session's cache, prepared first. Nothing starts otherwise."""
    import functools
    import sys

    from helpers import fault_scenario, ray_job, zoo
    from helpers.background import Background

    wanted = {name for item in request.session.items for name in _needs(item)}
    started = {}
    if wanted:
        request.getfixturevalue("tiny_prepared")
    if "tiny_sweep" in wanted:
        storage = tmp_path_factory.mktemp("demo")
        args = ("--working-dir", str(ROOT), "--", sys.executable, "-m", "sweeps.cli", "demo", "--quick",
                "--storage", str(storage))
        started["tiny_sweep"] = storage, Background(functools.partial(ray_job.run, *args))
    if "fault_scenario" in wanted:
        before = started["tiny_sweep"][1] if "tiny_sweep" in started else None
        work = functools.partial(fault_scenario.run, tmp_path_factory.mktemp("faults"))
        started["fault_scenario"] = Background(work, after=before)
    if "zoo_sweep" in wanted:  # beside the other two, not after them: its trials are short, many, one at a time
        started["zoo_sweep"] = Background(functools.partial(zoo.run, tmp_path_factory.mktemp("zoo")))
    yield started
    for value in started.values():
        (value[1] if isinstance(value, tuple) else value).stop()


@pytest.fixture(scope="session")
def tiny_sweep(_background):
    """``unlearn demo --quick`` (the tiny spec: preparation, Ray Tune trials of DeepSpeed worker
    groups, the report), run once for the session as a Ray job: its directory, report and the
    job's output."""
    storage, background = _background["tiny_sweep"]
    job = background.result()
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    report = storage / "demo" / "report.html"
    return {"dir": report.parent, "report": report, "said": job.stdout.splitlines(), "job": job}


@pytest.fixture(scope="session")
def fault_scenario(_background):
    """What each step of the fault scenario left on disk (``helpers/fault_scenario.py``)."""
    return _background["fault_scenario"].result()


@pytest.fixture(scope="session")
def zoo_sweep(_background):
    """``unlearn sweep sweeps/specs/zoo.yaml`` and ``unlearn report`` (``helpers/zoo.py``)."""
    return _background["zoo_sweep"].result()
