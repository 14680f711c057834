"""reports.uncertainty: the paired bootstrap over probes (and seeds) — coverage of the hypervolume
difference on simulated sweeps with known means, verdicts for identical and clearly different methods,
pairing (a constant per-probe gap has a zero-width interval), no interval without per-probe scores,
seeds resampled, and agreement with the unresampled numbers of ``pareto`` and ``summary``."""

import json

import numpy as np
import pandas as pd
import pytest

import reports
from helpers.report_sweeps import FORGET, RETAIN, UTILITY, make_sweep
from reports import summary, uncertainty
from reports.figures import ok_trials
from reports.pareto import configurations, hypervolume
from reports.uncertainty import INDISTINGUISHABLE, NO_INTERVAL, compare, compare_selected, hypervolume_intervals

DIRECTIONS = {"forget": "min", "retain": "max", "auc": "max"}
OBJECTIVES = {"forget": "min", "retain": "max"}
REFERENCE = (0.9, 0.3)  # the target's forget and the oracle's retain, worse than every trial: a fixed box
FRONT_A = [(0.20, 0.50), (0.35, 0.65), (0.50, 0.80)]
FRONT_B = [(0.25, 0.55), (0.40, 0.70), (0.55, 0.78)]


def frame(rows: list[dict], facets=None) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    records = {} if facets is None else {s: {"benchmark": {"facets": facets}} for s in df["sweep"].unique()}
    df.attrs = {"directions": dict(DIRECTIONS), "hyperparameters": ["lr", "seed"], "sweeps": records}
    return df


def trial(method: str, lr: float, probes: dict, seed: int = 0, sweep: str = "s", **extra) -> dict:
    """A finished trial's final row whose metrics are the means of its per-probe scores."""
    return {"sweep": sweep, "role": "trial", "method": method, "trial": f"{method}-{lr}-{seed}", "lr": lr,
            "seed": seed, "epoch": 1, "status": "ok", "final": True, "auc": 0.5,
            **{m: float(np.nanmean(v)) for m, v in probes.items()}, "probes": {m: list(v) for m, v in probes.items()},
            **extra}


def references(sweep: str = "s", n_forget: int = 40, n_retain: int = 60, **extra) -> list[dict]:
    """Target and oracle rows with constant per-probe scores that pin the reference point at REFERENCE."""
    return [{"sweep": sweep, "role": role, "forget": f, "retain": r, "auc": 0.5, **extra,
             "probes": {"forget": [f] * n_forget, "retain": [r] * n_retain}}
            for role, f, r in (("target", REFERENCE[0], 0.9), ("oracle", 0.1, REFERENCE[1]))]


def simulated(rng, fronts: dict, sweep: str = "s", n_forget: int = 40, n_retain: int = 60, spread: float = 0.08,
              noise: float = 0.08) -> list[dict]:
    """A sweep whose configuration i of a method has true means ``fronts[method][i]``: a probe's score is
    the mean + the probe's own effect (shared by every row: easy and hard probes) + the row's noise."""
    effect = {"forget": rng.normal(0, spread, n_forget), "retain": rng.normal(0, spread, n_retain)}
    rows = []
    for method, points in fronts.items():
        for i, means in enumerate(points):
            probes = {m: mean + effect[m] + rng.normal(0, noise, len(effect[m])) for m, mean in zip(effect, means)}
            rows.append(trial(method, float(i), probes, sweep=sweep))
    return rows + references(sweep, n_forget, n_retain)


def test_interval_covers_the_true_hypervolume_difference():
    truth = hypervolume(np.array(FRONT_A), OBJECTIVES, REFERENCE) - hypervolume(np.array(FRONT_B), OBJECTIVES,
                                                                                REFERENCE)
    rows = [r for k in range(200) for r in simulated(np.random.default_rng(k), {"a": FRONT_A, "b": FRONT_B},
                                                     sweep=f"s{k:03d}")]
    out = compare(frame(rows), "forget", "retain", resamples=400)
    assert len(out) == 200 and out["difference_lo"].notna().all()
    covered = ((out["difference_lo"] <= truth) & (truth <= out["difference_hi"])).mean()
    assert 0.90 <= covered <= 0.99, covered
    assert (out["difference_lo"] < out["difference"]).mean() > 0.95 and (out["difference"] < out["difference_hi"]).all()


def test_the_same_scores_under_two_names_are_indistinguishable():
    rows = simulated(np.random.default_rng(1), {"a": FRONT_A})
    twins = [dict(r, method="b", trial=f"b{i}") for i, r in enumerate(rows) if r["role"] == "trial"]
    df = frame(rows + twins)
    row = compare(df, "forget", "retain", resamples=400).iloc[0]
    assert (row["difference"], row["difference_lo"], row["difference_hi"]) == (0, 0, 0)
    assert row["verdict"] == INDISTINGUISHABLE and row["share_a_ahead"] == 0  # ties do not count as ahead
    picks = configurations(ok_trials(df)).groupby("method").head(1)
    assert set(compare_selected(df, picks, ["forget", "retain"], resamples=400)["verdict"]) == {INDISTINGUISHABLE}


def test_methods_drawn_alike_are_indistinguishable():
    df = frame(simulated(np.random.default_rng(2), {"a": FRONT_A, "b": FRONT_A}))
    row = compare(df, "forget", "retain", resamples=400).iloc[0]
    assert row["difference_lo"] < 0 < row["difference_hi"] and row["verdict"] == INDISTINGUISHABLE
    assert 0.05 < row["share_a_ahead"] < 0.95


def test_a_clearly_better_method_is_ahead():
    worse = [(f + 0.2, r - 0.15) for f, r in FRONT_A]
    df = frame(simulated(np.random.default_rng(3), {"a": worse, "z": FRONT_A}))
    row = compare(df, "forget", "retain", resamples=400).iloc[0]
    assert (row["a"], row["b"], row["verdict"]) == ("a", "z", "z ahead")
    assert row["difference_hi"] < 0 and row["share_a_ahead"] == 0
    df = frame(simulated(np.random.default_rng(3), {"a": FRONT_A, "z": worse}))
    row = compare(df, "forget", "retain", resamples=400).iloc[0]
    assert row["verdict"] == "a ahead" and row["share_a_ahead"] > 0.99
    picks = configurations(ok_trials(df)).groupby("method").head(1)  # each method's first: a's is better on both
    by_metric = compare_selected(df, picks, ["forget", "retain"], resamples=400).set_index("metric")
    assert list(by_metric["verdict"]) == ["a ahead", "a ahead"]
    assert by_metric.loc["forget", "difference_hi"] < 0 < by_metric.loc["retain", "difference_lo"]


def test_pairing_cancels_what_the_probes_share():
    base = np.random.default_rng(4).uniform(0, 1, 40)  # probes of very different difficulty
    df = frame([trial("a", 0.1, {"forget": base}), trial("b", 0.1, {"forget": base + 0.05})])
    table = uncertainty.intervals(df, ["forget"], resamples=400)
    assert ((table["forget_hi"] - table["forget_lo"]) > 0.1).all()  # each one's own interval is wide
    row = compare_selected(df, configurations(df), ["forget"], resamples=400).iloc[0]
    assert row["difference_lo"] == pytest.approx(-0.05) and row["difference_hi"] == pytest.approx(-0.05)
    assert row["verdict"] == "a ahead" and row["share_a_ahead"] == 1  # forget: lower is better


def test_metrics_of_equal_length_share_the_draw_and_other_lengths_get_their_own():
    rng = np.random.default_rng(5)
    forget, retain = rng.uniform(0, 1, 40), rng.uniform(0, 1, 60)
    df = frame([trial("a", 0.1, {"forget": forget, "auc": forget + 0.1, "retain": retain})])
    row = uncertainty.intervals(df, ["forget", "auc", "retain"], resamples=400).iloc[0]
    assert row["auc_lo"] - row["forget_lo"] == pytest.approx(0.1)
    assert row["auc_hi"] - row["forget_hi"] == pytest.approx(0.1)
    assert row["retain_lo"] < row["retain"] < row["retain_hi"]


def test_a_metric_without_per_probe_scores_gets_no_interval():
    rows = simulated(np.random.default_rng(6), {"a": FRONT_A, "b": FRONT_B})
    rows[0] = dict(rows[0], probes=None)  # a row with no per-probe scores at all
    df = frame(rows)
    table = uncertainty.intervals(df, ["auc", "forget"], resamples=200)
    assert table["auc"].notna().all() and table["auc_lo"].isna().all() and table["auc_hi"].isna().all()
    assert table["forget_lo"].isna().tolist() == [True] + [False] * (len(table) - 1)
    picks = configurations(ok_trials(df)).groupby("method").tail(1)
    row = compare_selected(df, picks, ["auc"], resamples=200).iloc[0]
    assert row["verdict"] == NO_INTERVAL and np.isnan(row["difference_lo"]) and np.isnan(row["share_a_ahead"])
    volumes = hypervolume_intervals(df, "auc", "retain", resamples=200)
    assert volumes["hypervolume"].notna().all() and volumes["hypervolume_lo"].isna().all()
    assert set(compare(df, "forget", "retain", resamples=200)["verdict"]) == {NO_INTERVAL}  # a's first has none


def test_seeds_are_resampled_with_the_same_draw_for_every_configuration():
    flat = lambda value: {"forget": np.full(40, value)}  # noqa: E731 - no spread over probes
    rows = [trial("a", 0.1, flat(v), seed=s) for s, v in enumerate([0.2, 0.5, 0.8])]
    rows += [trial("b", 0.1, flat(v + 0.05), seed=s) for s, v in enumerate([0.2, 0.5, 0.8])]
    rows += [trial("c", 0.1, flat(0.5))]
    df = frame(rows)
    table = uncertainty.intervals(df, ["forget"], resamples=400).set_index("method")
    assert table.loc["a", "n_seeds"] == 3 and table.loc["a", "forget_lo"] < 0.4 and table.loc["a", "forget_hi"] > 0.6
    assert table.loc["c", "forget_lo"] == table.loc["c", "forget_hi"] == 0.5  # one seed, no spread: one value
    picks = configurations(df)[lambda t: t["method"] != "c"]
    row = compare_selected(df, picks, ["forget"], resamples=400).iloc[0]
    assert row["difference_lo"] == pytest.approx(-0.05) and row["difference_hi"] == pytest.approx(-0.05)


def test_point_values_are_the_reports_and_the_draw_is_repeatable():
    rows = simulated(np.random.default_rng(7), {"a": FRONT_A, "b": FRONT_B})
    rows += [dict(r, trial=f"{r['trial']}-1", seed=1) for r in simulated(np.random.default_rng(8), {"a": FRONT_A})
             if r["role"] == "trial"]
    df = frame(rows)
    table = uncertainty.intervals(df, ["forget", "retain"], resamples=300)
    trials = table[table["role"] == "trial"].reset_index(drop=True)
    expected = configurations(df)
    assert np.allclose(trials[["forget", "retain"]], expected[["forget", "retain"]])
    assert list(trials["n_seeds"]) == [2, 2, 2, 1, 1, 1]
    assert list(table.loc[table["role"] != "trial", "forget"]) == [0.9, 0.1]
    assert ((table["forget_lo"] <= table["forget"]) & (table["forget"] <= table["forget_hi"])).all()
    volumes = hypervolume_intervals(df, "forget", "retain", resamples=300)
    reported = summary.hypervolumes(df, [("forget", "retain")])
    assert np.allclose(volumes["hypervolume"], reported["hypervolume"])
    assert list(volumes["reference"]) == list(reported["reference"]) == [REFERENCE] * 2
    assert volumes.equals(hypervolume_intervals(df, "forget", "retain", resamples=300))
    json_probes = df.assign(probes=df["probes"].map(json.dumps))  # as read back from a file
    json_probes.attrs = df.attrs
    assert uncertainty.intervals(json_probes, ["forget", "retain"], resamples=300).equals(table)


def test_each_facet_is_its_own_problem():
    rng = np.random.default_rng(9)
    rows = [dict(r, split=split) for split in ("x", "y") for r in simulated(rng, {"a": FRONT_A, "b": FRONT_B})]
    df = frame(rows, facets=["split"])
    volumes = hypervolume_intervals(df, "forget", "retain", resamples=200)
    reported = summary.hypervolumes(df, [("forget", "retain")])
    assert list(volumes["facet"]) == ["split=x", "split=x", "split=y", "split=y"]
    assert np.allclose(volumes["hypervolume"], reported["hypervolume"])
    assert list(compare(df, "forget", "retain", resamples=200)["facet"]) == ["split=x", "split=y"]
    table = uncertainty.intervals(df, ["forget"], resamples=200)
    assert (table["role"] == "trial").sum() == 12 and (table["role"] != "trial").sum() == 4


def test_the_selected_configurations_of_a_loaded_sweep(tmp_path):
    df = reports.load(make_sweep(tmp_path))
    offsets = np.linspace(-0.1, 0.1, 40)  # the same probes in every row; their mean is the metric's value
    df["probes"] = [None if pd.isna(f) else {FORGET: list(f + offsets), RETAIN: list(r + offsets[::-1])}
                    for f, r in zip(df[FORGET], df[RETAIN])]
    picks = summary.select(df).set_index("method")
    out = compare_selected(df, picks.reset_index(), [FORGET, RETAIN, UTILITY], resamples=200)
    assert list(out["metric"]) == [FORGET, RETAIN, UTILITY] and set(out["a"] + out["b"]) == {"undialunilogit"}
    assert np.allclose(out["difference"], [picks.loc["undial", m] - picks.loc["unilogit", m]
                                           for m in (FORGET, RETAIN, UTILITY)])
    assert (out["verdict"] != NO_INTERVAL).tolist() == [True, True, False]
    volumes = hypervolume_intervals(df, FORGET, RETAIN, resamples=200)
    assert np.allclose(volumes["hypervolume"], summary.hypervolumes(df, [(FORGET, RETAIN)])["hypervolume"])
    lo, point, hi = (volumes[c] for c in ("hypervolume_lo", "hypervolume", "hypervolume_hi"))
    assert ((lo <= point) & (point <= hi) & (lo < hi)).all()


def test_resampled_volumes_are_pareto_hypervolumes():
    rng = np.random.default_rng(10)
    xs, ys = rng.uniform(0, 1, (7, 50)), rng.uniform(0, 1, (7, 50))
    xs[2, :10], ys[3, 5:15] = np.nan, 1.5  # missing, and outside the box
    objectives, reference = {"forget": "min", "retain": 0.6}, (0.8, 0.05)
    points = np.c_[xs[:, 0], ys[:, 0]]
    volumes = uncertainty._volumes(points, xs, ys, objectives, reference)
    assert np.allclose(volumes, [hypervolume(np.c_[xs[:, b], ys[:, b]], objectives, reference) for b in range(50)])


def test_selected_configurations_compare_when_a_parameter_is_set_by_some_methods_only(tmp_path):
    """A hyper-parameter only some methods have (``retain`` here) is NaN for the others: the selected
    configurations still pair up with their resamples (the demo's sweep, whose GA and GD set none)."""
    trials = [{"method": "unilogit", "lr": 1e-3, "seed": 0, "retain": "nll"},
              {"method": "undial", "lr": 1e-3, "seed": 0, "gamma": 10},
              {"method": "ga", "lr": 1e-3, "seed": 0}]
    df = reports.load(make_sweep(tmp_path, "mixed", trials=trials))
    configs = configurations(ok_trials(df))
    chosen = configs[configs["method"].isin(["undial", "ga"]) & (configs["epoch"] == configs["epoch"].max())]
    chosen = chosen.assign(retain=np.nan, facet="")  # all NaN: a float column against the table's text
    out = compare_selected(df, chosen, [FORGET, RETAIN], resamples=200)
    assert len(chosen) == 2 and sorted(out["metric"]) == sorted([FORGET, RETAIN])
    assert set(out["verdict"]) <= {INDISTINGUISHABLE, "undial ahead", "ga ahead"}
