"""The driver loads no model: a sweep that prepares its target and oracle from ``model.base`` and
computes its references while every model loader of the driver process fails (``helpers/tracked.py``,
the sweep the tracking tests read too). The preparation and the references run in a Ray task, the
trials in Ray workers: other processes, which load as usual."""

import json

import pytest

from reports.record import REFERENCE_ROWS, REFERENCES

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_sweep_prepares_and_computes_its_references_without_loading_a_model_in_the_driver(tracked_sweep):
    sweep_dir, said = tracked_sweep["dir"], tracked_sweep["said"]
    assert len(tracked_sweep["trials"]) == 2  # every trial finished (checked where the sweep ran)
    assert (sweep_dir / REFERENCES).is_file()
    rows = json.loads((sweep_dir / REFERENCE_ROWS).read_text())["rows"]
    assert [row["role"] for row in rows] == ["target", "oracle"]  # "tiny" is no directory: no base row
    # the task's progress lines reached the driver: the preparation and the references
    assert any(line.startswith("done in") for line in said), said
    assert any(line.startswith("references computed once") for line in said), said
