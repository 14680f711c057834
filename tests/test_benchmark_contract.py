"""The benchmark contract, for every registered benchmark on its committed fixture: declared
metrics (direction, scale, role) all computed with standard errors, figures and a selection rule
that name only declared metrics, one-line errors for a bad parameter, and an idempotent
``materialize`` that leaves nothing behind when it fails."""

import pytest

import benchmarks
from helpers import contract

PARAMS = contract.PARAMS


@pytest.mark.parametrize("name", benchmarks.names())
def test_contract(name, tmp_path, monkeypatch):
    assert name in PARAMS, f"benchmark {name!r} has no fixture in tests/helpers/contract.py:PARAMS"
    benchmark = benchmarks.get(name, **PARAMS[name])
    contract.check_declaration(benchmark)
    contract.check_bad_parameter(name, PARAMS[name])
    data = contract.check_materialize(benchmark, tmp_path, monkeypatch)
    contract.check_evaluation(benchmark, data)
