"""Placement groups whose creator is dead: released by the driver, so that nothing waits for them.

A trial's worker group lives in a placement group that Ray Train's controller (an actor) creates.
Ray removes an actor's placement group only when the actor *and* its job have ended, so one left
behind by a controller that Tune killed (an early stop, or a stop during a restart of its workers)
keeps its CPUs reserved until the sweep's driver exits, and every later trial or task that needs
them waits forever. Ray Train's own cleaner misses the ones created in the last moment of a
controller's life. The driver therefore removes every placement group whose creating actor is
dead: between Tune's steps (:class:`Releaser`) and while its own tasks wait (``sweeps.run.on_worker``).
A placement group made by a driver (Tune's trials) or by a live actor is never touched."""

from __future__ import annotations

import time

from ray.tune import Callback

EVERY_S = 5.0  # how often Tune's loop looks for them


def _table() -> list:
    """The GCS's placement-group records (``gcs_pb2.PlacementGroupTableData``), removed ones too."""
    from ray._private import state
    from ray.core.generated import gcs_pb2

    accessor = state.state._connect_and_get_accessor()
    return [gcs_pb2.PlacementGroupTableData.FromString(raw) for raw in accessor.get_placement_group_table()]


def orphaned() -> list:
    """The placement groups still held whose creating actor is dead (never a driver's, never detached)."""
    from ray.core.generated import gcs_pb2

    removed = gcs_pb2.PlacementGroupTableData.REMOVED
    return [pg for pg in _table() if pg.state != removed and not pg.is_detached
            and _maker(pg) == "a dead actor"]


def release(progress=None) -> list[str]:
    """Remove the orphaned placement groups; their ids (hex). ``progress`` hears of each."""
    from ray import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    released = []
    for pg in orphaned():
        try:
            remove_placement_group(PlacementGroup(PlacementGroupID(pg.placement_group_id)))
        except Exception:  # removed meanwhile (Ray Train's cleaner): nothing is held any more
            continue
        released.append(pg.placement_group_id.hex())
        if progress:
            progress(f"released {_resources(pg)} held by a stopped trial's worker group "
                     f"(placement group {pg.placement_group_id.hex()[:12]}, its controller dead)")
    return released


def held() -> str:
    """What the live placement groups hold, one per line (for a task that waits for resources)."""
    from ray.core.generated import gcs_pb2

    removed = gcs_pb2.PlacementGroupTableData.REMOVED
    rows = [f"placement group {pg.placement_group_id.hex()[:12]} {pg.name or ''}: {_resources(pg)}, "
            f"made by {_maker(pg)}" for pg in _table() if pg.state != removed]
    return "\n".join(rows) or "no placement group"


def _maker(pg) -> str:
    from ray import ActorID

    if pg.creator_actor_id in (b"", ActorID.nil().binary()):
        return "a driver"
    return "a dead actor" if pg.creator_actor_dead else "a live actor"


def _resources(pg) -> str:
    total: dict[str, float] = {}
    for bundle in pg.bundles:
        for name, amount in bundle.unit_resources.items():
            if not name.startswith(("bundle_group", "node:")):
                total[name] = total.get(name, 0.0) + amount
    return ", ".join(f"{amount:g} {name}" for name, amount in sorted(total.items())) or "nothing"


class Releaser(Callback):
    """Between Tune's steps, at most every ``EVERY_S``, release the orphaned placement groups: a trial
    stopped by Tune then never keeps the next one from starting."""

    def __init__(self, progress=None):
        self.progress, self.last = progress, 0.0

    def __getstate__(self):  # Tune saves its callbacks with the run; a progress function stays here
        return {"progress": None, "last": 0.0}

    def on_step_begin(self, iteration, trials, **info):
        if time.monotonic() - self.last >= EVERY_S:
            self.last = time.monotonic()
            release(self.progress)
