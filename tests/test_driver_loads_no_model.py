"""The driver loads no model: a sweep that prepares its target and oracle from ``model.base`` and
computes its references while every model loader of the driver process fails. The preparation and
the references run in a Ray task, the trials in Ray workers: other processes, which load as usual."""

import json

import pytest

from helpers.sweep_specs import own_benchmark
from reports.record import REFERENCE_ROWS, REFERENCES
from sweeps import spec as specs

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# A benchmark of its own (a cache key of its own: the target and oracle are prepared, not reused),
# one epoch of preparation, one NPO trial of one epoch on one worker (NPO: reference NLLs too).
SPEC = own_benchmark("no-model-in-the-driver", 7, {"npo": {"lr": 1.0e-3}}, epochs=1,
                     eval={"every_epoch": [], "final": ["kl"]})


def test_a_sweep_prepares_and_computes_its_references_without_loading_a_model_in_the_driver(
        tmp_path, monkeypatch, ray_cluster):
    import benchmarks.prepare
    from sweeps.run import run_sweep
    from unlearn import models, pretrained

    def refuse(*args, **kwargs):
        raise AssertionError("the driver loaded a model")

    for module, name in ((models, "load_model"), (benchmarks.prepare, "_build"), (pretrained, "smollm2")):
        monkeypatch.setattr(module, name, refuse)
    said = []
    outcome = run_sweep(specs.from_dict(SPEC), storage=str(tmp_path), progress=said.append)
    assert outcome.finished == 1 and not outcome.failed, outcome
    assert (outcome.sweep_dir / REFERENCES).is_file()
    rows = json.loads((outcome.sweep_dir / REFERENCE_ROWS).read_text())["rows"]
    assert [row["role"] for row in rows] == ["target", "oracle"]  # "tiny" is no directory: no base row
    # the task's progress lines reached the driver: the preparation and the references
    assert any(line.startswith("done in") for line in said), said
    assert any(line.startswith("references computed once") for line in said), said
