"""Search on a real sweep of the tiny preset (Ray Tune → Ray Train → DeepSpeed, gloo, loopback):
a multi-objective Optuna search whose every configuration lies inside the declared space and whose
report marks who proposed each trial; and ASHA stopping, on one objective, a trial that is behind."""

import json

import pytest

from helpers import sweep_specs
from reports.record import STOPPED, read_json, read_rows, trials
from sweeps import spec as specs

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FORGET, RETAIN = "forget_qa_rouge_l_recall", "retain_qa_rouge_l_recall"
LR, WEIGHT = (1e-3, 1e-2), (0.5, 2.0)
EPOCHS = 16  # the ASHA sweep's


def tiny(name: str, methods: dict, search: dict, epochs: int, at_once: int = 1) -> specs.SweepSpec:
    """The tiny preset, one worker per trial, ``at_once`` trials at a time on the 2-CPU cluster,
    answers evaluated every epoch (nothing else)."""
    raw = sweep_specs.raw()
    scaling = dict(raw["scaling"], workers=1, **({"cpus_per_worker": 0.9} if at_once > 1 else {}))
    raw.update(name=name, methods=methods, search=search, training=dict(raw["training"], epochs=epochs),
               eval=dict(raw["eval"], every_epoch=["generation"], final=["generation"]),
               scaling=scaling, max_concurrent_trials=at_once)
    return specs.from_dict(raw)


def test_multi_objective_optuna_search_stays_inside_the_space_and_is_marked(ray_cluster, tiny_prepared, tmp_path):
    from reports import html
    from reports.results import load
    from sweeps.run import run_sweep

    spec = tiny("mo", {"gd": {"lr": {"loguniform": list(LR)}, "retain_weight": {"uniform": list(WEIGHT)},
                              "retain": "nll"}},
                {"algorithm": "optuna", "samples": 3, "seed": 1}, epochs=1, at_once=2)
    assert [(o.metric, o.mode) for o in spec.search.objectives] == [(FORGET, "min"), (RETAIN, "max")]
    outcome = run_sweep(spec, storage=str(tmp_path), progress=lambda line: None)
    assert outcome.finished == 3 and not outcome.failed
    found = trials(outcome.sweep_dir)
    assert len(found) == 3
    for trial in found:
        params = trial.params
        assert LR[0] <= params["lr"] <= LR[1] and WEIGHT[0] <= params["retain_weight"] <= WEIGHT[1]
        assert params["proposed_by"] == "optuna-tpe (startup)"  # 3 trials: all within TPE's random start
        for row in trial.rows:  # both objectives, under stable keys, every epoch
            assert row[f"objective_{FORGET}"] == row[FORGET] and row[f"objective_{RETAIN}"] == row[RETAIN]
    assert len({(t.params["lr"], t.params["retain_weight"]) for t in found}) == 3
    saved = (outcome.sweep_dir / "spec.yaml").read_text()
    assert f"metric: {FORGET}" in saved and "sampler: tpe" in saved  # the resolved objectives are recorded
    page = html.render(load(outcome.sweep_dir))
    assert "<td>optuna-tpe (startup)</td>" in page and "Configurations proposed by: optuna-tpe (startup) 3" in page


def test_asha_stops_a_trial_that_is_behind_on_its_objective(ray_cluster, tiny_prepared, tmp_path):
    from sweeps.run import run_sweep

    # Grid order: lr 1e-2 (forgets within an epoch) runs first, then lr 1e-6 (forgets nothing), which
    # ASHA's rungs (epochs 1, 2, 4 and 8; reduction factor 2) compare with it and stop; a third trial
    # still gets its worker group (the stopped trial's CPUs were released: sweeps.patches). The
    # decision reaches a trial while it trains on (Tune reads its results asynchronously, and a tiny
    # epoch takes a fraction of a second), so the stop may land at any rung or between them: 16
    # epochs leave it room, and it must land before the last.
    spec = tiny("asha", {"gd": {"lr": {"grid": [1e-2, 1e-6, 5e-3]}, "retain": "nll"}},
                {"algorithm": "grid", "asha": {"grace_period": 1, "reduction_factor": 2},
                 "objective": {"metric": FORGET, "mode": "min"}}, epochs=EPOCHS)
    outcome = run_sweep(spec, storage=str(tmp_path), progress=lambda line: None)
    assert not outcome.failed
    by_lr = {t.params["lr"]: t for t in trials(outcome.sweep_dir)}
    fast, slow = by_lr[1e-2], by_lr[1e-6]
    assert [r["epoch"] for r in read_rows(fast.path)] == list(range(1, EPOCHS + 1)) and fast.state == "ok"
    epochs = [r["epoch"] for r in read_rows(slow.path)]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < EPOCHS and slow.state == STOPPED
    assert slow.rows[0]["objective"] > fast.rows[0]["objective"]  # behind on forgetting after epoch 1
    assert read_json(slow.path / "stopped.json")["epoch"] in epochs
    assert json.loads((slow.path / "params.json").read_text())["proposed_by"] == "grid"
    after = by_lr[5e-3]
    assert after.rows and after.state in ("ok", STOPPED)
    # Tune stops every trial here (ASHA stops one early, and each at its last epoch), which kills its
    # controller as it may be restarting its workers: nothing may keep CPUs reserved afterwards
    # (the worker group's placement group reaches the cleaner as it is created: sweeps.patches; one
    # made in the controller's last moment is released by the driver before its next work: sweeps.orphans).
    assert placement_groups_left() == []


def placement_groups_left(wait_s: float = 60.0) -> list:
    """The cluster's placement groups not yet removed, once none is left or after ``wait_s``: a
    dead controller's group is removed by its cleaner, which looks once a second, or by the driver."""
    import time

    import ray

    from sweeps import orphans

    deadline = time.monotonic() + wait_s
    while True:
        orphans.release()
        left = [pg for pg, info in ray.util.placement_group_table().items() if info["state"] != "REMOVED"]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)
