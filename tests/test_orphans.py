"""A placement group whose creating actor died (a trial controller Tune killed) is released by the
driver, so that the driver's next task does not wait for its CPUs forever; a driver's placement
group and a live actor's are left alone."""

import pytest

pytestmark = [pytest.mark.ray]


def _state(pg_id: str) -> str:
    import ray

    return ray.util.placement_group_table()[pg_id]["state"] if pg_id in ray.util.placement_group_table() else "?"


def test_a_dead_actors_placement_group_no_longer_blocks_the_drivers_next_task(ray_cluster):
    import ray
    from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group

    from sweeps import orphans
    from sweeps.run import on_worker

    @ray.remote(num_cpus=0)
    class Maker:
        def make(self, cpus: float) -> str:
            group = placement_group([{"CPU": cpus}])
            ray.get(group.ready())
            return group.id.hex()

    cpus = ray.cluster_resources()["CPU"]
    doomed, alive = Maker.remote(), Maker.remote()
    orphan = ray.get(doomed.make.remote(cpus - 0.5))
    kept = ray.get(alive.make.remote(0.25))
    own = placement_group([{"CPU": 0.25}])
    ray.get(own.ready())
    try:
        assert ray.available_resources().get("CPU", 0.0) < 1  # the task below needs a whole CPU
        assert orphans.orphaned() == []  # its creator still lives
        ray.kill(doomed)
        said = []
        assert on_worker(lambda *, progress: 42, {"num_cpus": 1}, said.append) == 42
        assert any(f"placement group {orphan[:12]}" in line and "controller dead" in line for line in said)
        assert _state(orphan) == "REMOVED"
        assert _state(kept) == "CREATED" and _state(own.id.hex()) == "CREATED"
        held = orphans.held()
        assert f"{kept[:12]}" in held and "a live actor" in held and "a driver" in held and orphan[:12] not in held
        assert orphans.release() == []
    finally:
        ray.kill(alive)
        for group in (own, PlacementGroup(ray.PlacementGroupID.from_hex(kept))):
            remove_placement_group(group)

def test_the_releaser_is_saved_with_tunes_run_without_its_progress_function():
    import pickle

    from sweeps.orphans import Releaser

    releaser = pickle.loads(pickle.dumps(Releaser(progress=lambda line: None)))
    assert releaser.progress is None and releaser.last == 0.0
