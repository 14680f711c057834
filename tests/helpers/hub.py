"""The hub replaced in tests: a stand-in for ``layouts.hub_rows`` that answers from a fixture
directory (and records the calls), and one that fails on any network use."""

from pathlib import Path

from benchmarks import layouts


def fake_hub(monkeypatch, root: Path, layout: str) -> list:
    """``layouts.hub_rows`` answering from ``root`` in ``layout``; returns the calls it got."""
    calls = []

    def hub_rows(repo, config, split):
        calls.append((repo, config, split))
        return layouts.load(root, layout, config, split)

    monkeypatch.setattr(layouts, "hub_rows", hub_rows)
    return calls


def no_hub(repo, config, split):
    raise AssertionError(f"network use: {repo} {config}/{split}")
