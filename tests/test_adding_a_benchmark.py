"""The example of ``docs/adding-a-benchmark.md``, run exactly as written: its Python block becomes a
module, registers ``qa_pairs``, and passes the contract checks every registered benchmark passes."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

import benchmarks
from benchmarks import spec as registry
from helpers import contract

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding-a-benchmark.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


@pytest.fixture
def qa_pairs(tmp_path):
    """The module from the page, registered for the test only."""
    (code,) = blocks("python")
    path = tmp_path / "qa_pairs_example.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("qa_pairs_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    registry._REGISTRY.pop("qa_pairs", None)


@pytest.fixture
def fixture_dir(tmp_path):
    """The page's fixture line plus a few more of the same shape."""
    example = json.loads(re.search(r"```jsonl\n\s*(.*?)\n", DOC.read_text()).group(1))
    root = tmp_path / "qa"
    root.mkdir()
    forget = [example] + [{"question": f"What is the code of item {i}?", "answer": f"item {i} code K{i}"}
                          for i in range(3)]
    retain = [{"question": f"What colour is lamp {i}?", "answer": f"lamp {i} is blue"} for i in range(4)]
    (root / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in forget))
    (root / "retain.jsonl").write_text("".join(json.dumps(r) + "\n" for r in retain))
    return root


def test_the_documented_benchmark_meets_the_contract(qa_pairs, fixture_dir, tmp_path, monkeypatch):
    assert "qa_pairs" in benchmarks.names()
    params = {"path": str(fixture_dir)}
    benchmark = benchmarks.get("qa_pairs", **params)
    contract.check_declaration(benchmark)
    contract.check_bad_parameter("qa_pairs", params)
    data = contract.check_materialize(benchmark, tmp_path / "cache", monkeypatch)
    contract.check_evaluation(benchmark, data)


def test_the_documented_spec_is_valid(qa_pairs, fixture_dir):
    from sweeps import spec as specs

    (text,) = blocks("yaml")
    raw = yaml.safe_load(text)
    raw["model"]["target"] = str(fixture_dir)  # any existing directory stands in for the model here
    raw["benchmark"]["params"]["path"] = str(fixture_dir)
    spec = specs.from_dict(raw)
    assert [label for label, _ in spec.benchmark.variants()] == [{"max_new_tokens": 8}, {"max_new_tokens": 16}]
