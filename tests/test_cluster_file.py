"""cluster.yaml against Ray's own cluster-launcher schema, and the shared-storage rule."""

import copy
from pathlib import Path

import pytest
import yaml

from sweeps import cluster
from sweeps.spec import SpecError

CLUSTER = Path(__file__).resolve().parents[1] / "cluster.yaml"


def validate(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_yaml_passes_ray_schema_validation():
    config = yaml.safe_load(CLUSTER.read_text())
    validate(config)
    assert config["available_node_types"]["gpu4"]["resources"]["GPU"] == 4
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "HF_TOKEN" not in " ".join(config["setup_commands"])  # never written onto the nodes


@pytest.mark.parametrize("break_it,error", [
    (lambda c: c.update(max_wokers=4), "ValidationError"),  # an unknown key
    (lambda c: c["available_node_types"]["gpu4"].update(max_workers="four"), "ValidationError"),
    (lambda c: c.pop("provider"), "KeyError"),  # Ray fills provider defaults before the schema check
])
def test_a_broken_copy_fails_validation(break_it, error):
    config = yaml.safe_load(CLUSTER.read_text())
    break_it(config)
    with pytest.raises(Exception) as raised:  # noqa: B017  (the exact type is checked below)
        validate(config)
    assert type(raised.value).__name__ == error


def test_local_storage_is_refused_on_several_nodes(monkeypatch):
    monkeypatch.delenv("UNLEARN_SHARED_DIR", raising=False)
    cluster.check_storage("runs", 1)
    with pytest.raises(SpecError, match="storage 'runs' is a local path but the cluster has 3 nodes"):
        cluster.check_storage("runs", 3)
    monkeypatch.setenv("UNLEARN_SHARED_DIR", "/mnt/shared")
    cluster.check_storage("/mnt/shared/unlearn/runs", 3)
    with pytest.raises(SpecError, match="not a URI"):
        cluster.check_storage("s3://bucket/runs", 1)


def test_trials_run_on_the_head_when_it_has_cpus_for_them():
    """A trial's own actor (and Ray Train's controller beside it) asks for a sliver of the head's
    own resource when the head has CPUs for the concurrent trials: a lost worker node then costs a
    trial its worker group only. A head without them (``ray start --head --num-cpus=0``) pins
    nothing, so the trials still fit somewhere."""
    from sweeps.spec import Scaling

    scaling = Scaling(trial_cpus=0.1)
    assert cluster.trial_resources(scaling, 2, head_cpus=8) == {"CPU": 0.1, cluster.HEAD: cluster.HEAD_SHARE}
    assert cluster.trial_resources(scaling, 10, head_cpus=1) == {"CPU": 0.1, cluster.HEAD: cluster.HEAD_SHARE}
    assert cluster.trial_resources(scaling, 11, head_cpus=1) == {"CPU": 0.1}
    assert cluster.trial_resources(scaling, 1, head_cpus=0) == {"CPU": 0.1}
    assert cluster.HEAD == "node:__internal_head__"  # the resource Ray gives the head node
