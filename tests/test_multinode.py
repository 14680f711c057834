"""Several nodes on one machine: a head and two worker nodes, each a raylet of its own on 127.0.0.1
(``helpers/multinode.py``). A sweep of two trials runs on it, one trial's worker on each worker
node, while the trials themselves (Tune's trial and Ray Train's controller) run on the head. When
one trial's second epoch ends, its rank 0 names its node (the fault hook's ``kill=node``) and the
test kills every process of that node: Ray Train starts the trial's worker group again on the node
left, once the other trial has left room there, from the first epoch's checkpoint, and the trial
finishes. Everything the sweep wrote is in the shared storage, and storage outside it is refused
on this cluster."""

import json
import os
from pathlib import Path

import pytest

from helpers import multinode
from reports.record import Trial, read_rows
from sweeps import faults

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.own_cluster]

NAME = "multinode"
FAIL_AT = "rank=0,epoch=2,kill=node"
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, unlearn_cache):
    """The cluster; a sweep whose storage is outside the shared directory (refused) and, at the same
    time, the sweep that loses a node; what each left."""
    import psutil

    from helpers.background import kill_tree

    where = tmp_path_factory.mktemp("multinode").resolve()
    shared = where / "shared"
    shared.mkdir()
    spec = multinode.spec(where, NAME)
    cluster = multinode.LocalCluster(head_cpus=1, worker_cpus=(2, 2))
    seen = {"cluster": cluster, "shared": shared, "head": cluster.head.node_id, "workers": set(cluster.workers),
            "sweep_dir": shared / "runs" / NAME}
    drivers = []
    try:
        seen["listening"] = {(c.laddr.ip, c.pid) for c in psutil.net_connections(kind="inet")
                             if c.status == psutil.CONN_LISTEN and c.pid in {p.pid for p in cluster.processes()}}
        outside, log = where / "local", where / "sweep.log"
        drivers.append(multinode.sweep(spec, outside, cluster.address, shared, where / "refused.log"))
        drivers.append(multinode.sweep(spec, shared / "runs", cluster.address, shared, log, fail_at=FAIL_AT))
        refused, driver = drivers
        seen["refused"] = (refused.wait(timeout=600), (where / "refused.log").read_text(), outside.exists(),
                           outside / NAME)
        seen["marker"] = multinode.wait_for_marker(seen["sweep_dir"] / faults.NODE_MARKER, driver, log)
        seen["killed"] = cluster.remove(seen["marker"]["node_id"])
        seen["exit"] = driver.wait(timeout=900)
        seen["log"] = log.read_text()
        yield seen
    finally:
        for process in drivers:
            if process.poll() is None:
                kill_tree(process)
        cluster.shutdown()


def test_the_nodes_are_separate_raylets_on_loopback(scenario):
    assert len(scenario["workers"]) == 2 and scenario["head"] not in scenario["workers"]
    ips = {ip for ip, _ in scenario["listening"]}
    assert ips and ips <= set(LOOPBACK), scenario["listening"]


def test_storage_outside_the_shared_dir_is_refused_on_several_nodes(scenario):
    code, output, created, sweep_dir = scenario["refused"]
    lines = [line for line in output.splitlines() if line.strip()]
    assert code != 0 and not created
    assert lines[-1] == (f"unlearn: error: storage '{sweep_dir}' is a local path but the cluster has 3 nodes; use a "
                         f"directory under the shared mount named by UNLEARN_SHARED_DIR ({scenario['shared']})")


def test_a_trial_whose_node_is_lost_resumes_on_another_node_and_finishes(scenario):
    """Both trials finished. The killed trial's first worker group ran on the lost node and recorded
    epoch 1; the group Ray Train started again ran on the other worker node, resumed from epoch
    1's checkpoint and recorded epoch 2: every epoch once. The other trial ran on that other node
    from the start: the two trials' worker groups ran on different nodes, never on the head."""
    assert scenario["exit"] == 0, scenario["log"][-3000:]
    marker, sweep_dir = scenario["marker"], scenario["sweep_dir"]
    lost = marker["node_id"]
    (other,) = scenario["workers"] - {lost}
    assert marker["epoch"] == 2 and marker["rank"] == 0 and marker["node_ip"] == "127.0.0.1"
    assert any(p.pid == marker["pid"] for p in scenario["killed"])  # the waiting worker went with its node

    trials = {path.name: read_rows(path) for path in sorted((sweep_dir / "ga").glob("run_trial_*"))}
    assert len(trials) == 2
    for rows in trials.values():
        assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["final"] is True
        assert all(r["status"] == "ok" and r["world_size"] == 1 and r["node_ips"] == ["127.0.0.1"] for r in rows)
    killed = trials[Path(marker["trial"]).name]
    lines = [json.loads(line) for line in (sweep_dir / marker["trial"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]  # every epoch once, as written
    assert [r["start_epoch"] for r in killed] == [0, 1]  # resumed from epoch 1's checkpoint
    assert [r["node_ids"] for r in killed] == [[lost], [other]]
    (survivor,) = [rows for name, rows in trials.items() if name != Path(marker["trial"]).name]
    assert [r["start_epoch"] for r in survivor] == [0, 0]
    assert [r["node_ids"] for r in survivor] == [[other], [other]]


def test_results_and_checkpoints_are_all_in_the_shared_storage(scenario):
    """Each trial's Tune files, its record and its final model lie in the sweep's directory under
    the shared storage. No checkpoint, weights or record is anywhere in the cluster's own
    directory (where Ray keeps the driver's copies of Tune's results), and nothing of the sweep is
    in Ray's default results directory."""
    sweep_dir, shared = scenario["sweep_dir"], scenario["shared"]
    ids = []
    for path in sorted((sweep_dir / "ga").glob("run_trial_*")):
        trial = Trial.read(path)
        assert all((path / name).is_file() for name in ("params.json", "result.json", "metrics.jsonl"))
        assert trial.model_dir is not None and (trial.model_dir / "config.json").is_file()
        assert trial.model_dir.resolve().is_relative_to(sweep_dir / "train")
        ids.append(trial.last["trial_id"])
    assert len(ids) == 2
    assert {p.name for p in (sweep_dir / "train").iterdir()} >= {f"train-{i}" for i in ids}
    assert all(path.resolve().is_relative_to(shared) for path in sweep_dir.rglob("*"))
    assert multinode.files_under(Path(scenario["cluster"].temp_dir), multinode.is_checkpoint_or_record) == []
    ray_results = Path(os.path.expanduser("~/ray_results"))
    assert multinode.files_under(ray_results, lambda name: any(i in name for i in ids)) == []
