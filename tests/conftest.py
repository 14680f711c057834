"""Test-wide settings: offline, loopback only, deterministic and single-threaded where it matters."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


import pytest


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
