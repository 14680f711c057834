"""95 % intervals on configurations, hypervolumes and verdicts by a paired bootstrap over probes.

A metric's value is the mean of its per-probe scores (the ``probes`` column: ``{metric: [score, …]}``
per row, NaN entries ignored). The probes are a sample of the questions a benchmark could ask, so a
resample draws them again with replacement — and a configuration's seeds too when it has several —
and recomputes every mean, hypervolume and difference; an interval is the percentile range of the
resampled values. Metrics without per-probe scores (an AUC over the whole set) get none (NaN).

Resampling rule. Every row of a sweep scores the same probes in the same order, so a resample picks
the same probes for everything it compares (paired: what the probes share, easy or hard, cancels in
differences). In resample b one index vector is drawn per sweep and distinct list length n, and every
metric of the sweep with n per-probe scores, in every row (trial and reference rows alike), uses it;
the metrics of one probe group, of one length, move together (groups of equal size share indices
too, which leaves each metric's own interval as it is). Seeds likewise: one draw of seed positions per
sweep and number of seeds k, applied to the sorted seeds of every configuration with k, so runs on the
same seeds stay paired. Averaged-over targets (``average_over``) are averaged, not resampled. The
draws depend only on ``seed``, the sweep's name and n (or k): every function sees the same resamples.
"""

from __future__ import annotations

import json
import warnings
import zlib
from itertools import combinations
from typing import Mapping

import numpy as np
import pandas as pd

from reports.figures import ok_trials
from reports.pareto import Direction, _averaged, configurations, hypervolume, reference_point, scores
from reports.results import directions as recorded_directions
from reports.results import facet_groups, facet_label
from reports.summary import _facets

INDISTINGUISHABLE = "indistinguishable at this size"
NO_INTERVAL = "no interval: no per-probe scores"
_PROBES, _SEEDS = 1, 2  # kinds of draw


class _Draws:
    """The resamples of one call: for (sweep, kind, n), a (resamples, n) matrix of how often each of
    n probes (or seed positions) is drawn in each resample — a mean over the draw is then a matrix product."""

    def __init__(self, resamples: int, seed: int):
        self.resamples, self.seed, self._made = int(resamples), int(seed), {}

    def counts(self, sweep, kind: int, n: int) -> np.ndarray:
        key = (str(sweep), kind, n)
        if key not in self._made:
            rng = np.random.default_rng([self.seed, zlib.crc32(key[0].encode()), kind, n])
            picks = rng.integers(0, n, size=(self.resamples, n)) + n * np.arange(self.resamples)[:, None]
            self._made[key] = np.bincount(picks.ravel(), minlength=self.resamples * n).reshape(self.resamples, n)
        return self._made[key]


def intervals(df: pd.DataFrame, metrics, *, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per configuration of the trial rows (``pareto.configurations``: method ×
    hyper-parameters × facet values × epoch, seeds and targets averaged; ``role`` = ``trial``), then one
    per reference row of each sweep (``role`` = ``target``, ``oracle`` …): each metric's value and
    ``<metric>_lo``, ``<metric>_hi``, resampling probes (the same indices for all of a sweep's rows)
    and seeds. Pass ``ok_trials(df)`` with the reference rows to keep finished trials only."""
    metrics = list(metrics)
    table, values, _ = _resampled(df, metrics, _Draws(resamples, seed))
    ends = {}
    for metric in metrics:
        ends[f"{metric}_lo"], ends[f"{metric}_hi"] = _interval(values[metric], level)
    table = pd.concat([table, pd.DataFrame(ends, index=table.index)], axis=1)
    keys = [c for c in ("sweep", "role", *_keys(df)[1:]) if c in table]
    extra = [c for c in ("n_seeds", "n_subjects", "trials") if c in table]
    return table[[*keys, *[c for m in metrics for c in (m, f"{m}_lo", f"{m}_hi")], *extra]]


def hypervolume_intervals(df: pd.DataFrame, x: str, y: str, directions: Mapping[str, Direction] | None = None, *,
                          resamples: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per sweep × facet combination × method, as ``summary.hypervolumes``: the
    ``hypervolume`` of the method's front (every finished configuration × epoch) up to the
    ``reference`` point of the unresampled sweep (finished trials, target and oracle), held fixed, and
    ``hypervolume_lo``, ``hypervolume_hi`` over resamples of the probes and seeds."""
    out = []
    for front in _fronts(df, x, y, directions, _Draws(resamples, seed)):
        for method, (point, resampled) in front["volumes"].items():
            lo, hi = _interval(resampled, level)
            out.append({**front["where"], "method": method, "x": x, "y": y, "hypervolume": point,
                        "hypervolume_lo": lo, "hypervolume_hi": hi, "reference": front["reference"]})
    columns = ["sweep", "facet", "method", "x", "y", "hypervolume", "hypervolume_lo", "hypervolume_hi", "reference"]
    return pd.DataFrame(out, columns=None if out else columns)


def compare(df: pd.DataFrame, x: str, y: str, directions: Mapping[str, Direction] | None = None, *,
            resamples: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per sweep × facet combination × method pair ``a`` < ``b``: ``difference`` of their
    hypervolumes (a − b, as in ``hypervolume_intervals``), ``difference_lo``, ``difference_hi`` (both
    fronts resampled with the same probes and seeds), ``share_a_ahead`` (resamples in which a's
    hypervolume exceeds b's) and ``verdict``: ``"<a> ahead"``, ``"<b> ahead"`` when the interval
    excludes zero, else ``INDISTINGUISHABLE``."""
    out = []
    for front in _fronts(df, x, y, directions, _Draws(resamples, seed)):
        for a, b in combinations(sorted(front["volumes"]), 2):
            (point_a, va), (point_b, vb) = front["volumes"][a], front["volumes"][b]
            difference = None if va is None or vb is None else va - vb
            out.append({**front["where"], "x": x, "y": y, **_pair(a, b, point_a - point_b, difference, difference,
                                                                  level)})
    columns = ["sweep", "facet", "x", "y", "a", "b", "difference", "difference_lo", "difference_hi",
               "share_a_ahead", "verdict"]
    return pd.DataFrame(out, columns=None if out else columns)


def compare_selected(df: pd.DataFrame, selected: pd.DataFrame, metrics, directions: Mapping[str, Direction] | None
                     = None, *, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The paired comparison of chosen configurations — rows of ``selected`` naming a configuration of
    the finished trials by its ``pareto.configurations`` columns, e.g. ``summary.select(df)`` (rows
    without a pick are skipped) — per sweep × ``facet`` × pair ``a`` < ``b`` (by method) × metric:
    ``difference`` (a − b, in the metric's units), ``difference_lo``, ``difference_hi``,
    ``share_a_ahead`` (resamples in which a is better by the metric's direction) and ``verdict``
    (``"<a> ahead"``, ``"<b> ahead"`` when the interval excludes zero, else ``INDISTINGUISHABLE``)."""
    metrics, known = list(metrics), recorded_directions(df) if directions is None else dict(directions)
    table, values, _ = _resampled(ok_trials(df), metrics, _Draws(resamples, seed))
    keys = [k for k in _keys(df) if k in selected and k in table]
    picked = selected[selected[["method", "epoch"]].notna().all(axis=1)] if "epoch" in keys else selected.iloc[:0]
    found = picked[[*keys, "facet"]] if "facet" in picked else picked[keys].assign(facet="")
    as_objects = {k: object for k in keys}  # a column all NaN on one side (a parameter only some methods have)
    found = found.astype(as_objects).merge(table[keys].astype(as_objects).reset_index(names="unit"), on=keys,
                                           how="inner")
    out = []
    for (sweep, facet), group in found.groupby(["sweep", "facet"], sort=True, dropna=False):
        for ra, rb in combinations(sorted(group.to_dict("records"), key=lambda r: str(r["method"])), 2):
            for metric in metrics:
                va, vb = values[metric][ra["unit"]], values[metric][rb["unit"]]
                sa, sb = (scores(v[:, None], {metric: known[metric]})[:, 0] for v in (va, vb))
                point = table[metric].iloc[ra["unit"]] - table[metric].iloc[rb["unit"]]
                out.append({"sweep": sweep, "facet": facet, "metric": metric,
                            **_pair(ra["method"], rb["method"], point, va - vb, sb - sa, level)})
    columns = ["sweep", "facet", "metric", "a", "b", "difference", "difference_lo", "difference_hi",
               "share_a_ahead", "verdict"]
    return pd.DataFrame(out, columns=None if out else columns)


def _pair(a, b, point: float, difference: np.ndarray, advantage: np.ndarray, level: float) -> dict:
    """A comparison row: ``difference`` resampled a − b; ``advantage`` resampled, > 0 where a is better."""
    lo, hi = _interval(difference, level)
    adv_lo, adv_hi = _interval(advantage, level)
    if np.isnan(adv_lo):
        verdict, share = NO_INTERVAL, np.nan
    else:
        verdict = f"{a} ahead" if adv_lo > 0 else f"{b} ahead" if adv_hi < 0 else INDISTINGUISHABLE
        share = float(np.mean(advantage[~np.isnan(advantage)] > 0))
    return {"a": a, "b": b, "difference": point, "difference_lo": lo, "difference_hi": hi, "share_a_ahead": share,
            "verdict": verdict}


def _interval(values: np.ndarray | None, level: float):
    """Percentile interval over the last axis (NaN resamples left out; NaN where all are)."""
    if values is None:
        return np.nan, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all NaN: no per-probe scores
        return tuple(np.nanquantile(values, [(1 - level) / 2, (1 + level) / 2], axis=-1))


def _fronts(df, x, y, directions, draws):
    """Per sweep × facet combination (as ``summary.hypervolumes``): ``where`` (sweep, facet values,
    facet), the fixed ``reference`` and ``volumes``: method → (hypervolume, resampled or None)."""
    known = recorded_directions(df) if directions is None else dict(directions)
    missing = [m for m in (x, y) if m not in df or m not in known]
    if missing:
        raise KeyError(f"no column or no direction for {', '.join(missing)}")
    objectives, df = {x: known[x], y: known[y]}, df.reset_index(drop=True)
    finished = ok_trials(df)
    table, values, units = _resampled(finished, [x, y], draws)
    unit_of, points = pd.Series(units, index=finished.index), table[[x, y]].to_numpy(dtype=float)
    for sweep, sweep_df in df.groupby("sweep", sort=True):
        for where, group in facet_groups(sweep_df):
            finished = ok_trials(group)
            reference = reference_point(pd.concat([finished, group[group["role"].isin(["target", "oracle"])]]),
                                        objectives)
            methods, mine = finished["method"].to_numpy(), unit_of[finished.index].to_numpy()
            volumes = {}
            for method in sorted(group.loc[group["role"] == "trial", "method"].dropna().unique()):
                own = np.unique(mine[methods == method])
                volumes[method] = ((hypervolume(points[own], objectives, reference),
                                    _volumes(points[own], values[x][own], values[y][own], objectives, reference))
                                   if len(own) else (np.nan, None))
            yield {"where": {"sweep": sweep, **where, "facet": facet_label(where)}, "reference": tuple(reference),
                   "volumes": volumes}


def _volumes(points: np.ndarray, xs: np.ndarray, ys: np.ndarray, objectives, reference) -> np.ndarray | None:
    """Each resample's hypervolume of ``points`` (n, 2) given their resampled (n, resamples) values:
    the measure of ``pareto.hypervolume`` in 2-D (the strips of a sweep along x), all resamples at
    once. None when a point on the plot has no per-probe scores for x or y."""
    if (~np.isnan(points).any(axis=1) & (np.isnan(xs).all(axis=1) | np.isnan(ys).all(axis=1))).any():
        return None
    ref = scores(np.asarray(reference, dtype=float)[None, :], objectives)[0]
    if np.isnan(ref).any():
        return np.full(xs.shape[1], np.nan)
    s = scores(np.stack([xs.T, ys.T], axis=-1).reshape(-1, 2), objectives).reshape(xs.shape[1], len(xs), 2)
    s = np.where(((s < ref).all(axis=-1))[..., None], s, ref)  # NaN or outside the box: adds nothing
    s = np.take_along_axis(s, np.lexsort((s[..., 1], s[..., 0]), axis=-1)[..., None], axis=1)
    best = np.minimum.accumulate(s[..., 1], axis=1)
    following = np.concatenate([s[:, 1:, 0], np.full((len(s), 1), ref[0])], axis=1)
    return ((following - s[..., 0]) * (ref[1] - best)).sum(axis=1)


def _keys(df: pd.DataFrame) -> list[str]:
    """The columns a configuration is grouped by: those of ``pareto.configurations`` and the declared
    facets (separate problems, as ``summary`` treats them)."""
    averaged = _averaged(df)
    named = dict.fromkeys([*df.attrs.get("hyperparameters", []), *_facets(df)])
    return ["sweep", "method", *[h for h in named if h != "seed" and h not in averaged and h in df], "epoch"]


def _resampled(df: pd.DataFrame, metrics: list[str], draws: _Draws) -> tuple[pd.DataFrame, dict, np.ndarray]:
    """The units (``_units``) with each metric's point value; per metric a (units, resamples) matrix of
    resampled values; each row's unit."""
    df = df.reset_index(drop=True).reindex(columns=[*df.columns, *[m for m in metrics if m not in df]])
    table, units = _units(df, metrics)
    seeds = pd.Series(pd.factorize(df["seed" if "seed" in df else "trial"].astype(str), sort=True)[0])
    position = (seeds.groupby(units).rank(method="dense") - 1).to_numpy(dtype=int)  # among the unit's seeds
    probes = df["probes"].map(_parse) if "probes" in df else pd.Series([{}] * len(df), dtype=object)
    values = {m: np.full((len(table), draws.resamples), np.nan) for m in metrics}
    for sweep, rows in df.groupby("sweep", sort=False).indices.items():
        for metric in metrics:
            means = _row_means(probes.iloc[rows], metric, draws, sweep)
            lacking = np.isnan(means).all(axis=1) & df[metric].iloc[rows].notna().to_numpy()
            _unit_means(values[metric], units[rows], position[rows], means, lacking, draws, sweep)
    return table, values, units


def _units(df: pd.DataFrame, metrics: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The configurations of the trial rows (``role`` = ``trial``), then the reference rows per sweep ×
    role × the same columns (targets averaged), with each metric's mean over the unit's rows (as
    ``pareto.configurations``); and each row's unit number."""
    keys = _keys(df)
    trials, refs = df[df["role"] == "trial"], df[df["role"] != "trial"]
    table = configurations(trials, keys[2:-1], _averaged(df)).assign(role="trial")
    units = np.full(len(df), -1)
    if len(trials):
        units[trials.index] = trials.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    if len(refs):
        by = refs.groupby(["sweep", "role", *keys[1:]], dropna=False, sort=False)
        units[refs.index] = by.ngroup().to_numpy() + len(table)
        table = pd.concat([table, by.size().reset_index()[["sweep", "role", *keys[1:]]]], ignore_index=True)
    for metric in metrics:
        table[metric] = df[metric].groupby(units).mean().reindex(range(len(table))).to_numpy()
    front = ["sweep", "role", *keys[1:]]
    return table[[*front, *[c for c in table.columns if c not in front]]], units


def _parse(cell) -> dict:
    if isinstance(cell, str):
        cell = json.loads(cell)
    return cell if isinstance(cell, dict) else {}


def _row_means(probes: pd.Series, metric: str, draws: _Draws, sweep) -> np.ndarray:
    """(rows, resamples): each row's mean of its per-probe scores of ``metric`` over each resample's
    draw of its probes (NaN scores left out; NaN for a row without them)."""
    lists = [np.asarray(p[metric], dtype=float) if p.get(metric) is not None else np.zeros(0) for p in probes]
    out = np.full((len(lists), draws.resamples), np.nan)
    lengths = np.array([len(v) for v in lists])
    for n in np.unique(lengths[lengths > 0]):
        at = np.flatnonzero(lengths == n)
        block = np.stack([lists[i] for i in at])
        seen, drawn = ~np.isnan(block), draws.counts(sweep, _PROBES, int(n)).T.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[at] = (np.where(seen, block, 0.0) @ drawn) / (seen @ drawn)
    return out


def _unit_means(into: np.ndarray, units: np.ndarray, position: np.ndarray, means: np.ndarray, lacking: np.ndarray,
                draws: _Draws, sweep) -> None:
    """Fill ``into[unit]`` with the unit's resampled value: the mean over its rows of one seed
    (targets), then the mean over each resample's draw of its seeds. A unit with a row that has a
    value but no per-probe scores stays NaN."""
    width = int(position.max()) + 1
    cells, inverse = np.unique(units * width + position, return_inverse=True)  # sorted by unit, then seed
    order = np.argsort(inverse, kind="stable")
    starts, seen = np.searchsorted(inverse[order], np.arange(len(cells))), ~np.isnan(means)
    with np.errstate(invalid="ignore", divide="ignore"):
        cell_means = (np.add.reduceat(np.where(seen, means, 0.0)[order], starts, axis=0)
                      / np.add.reduceat(seen[order].astype(float), starts, axis=0))
    unit_of = cells // width
    sizes = np.unique(unit_of, return_counts=True)[1]
    seeds = np.repeat(sizes, sizes)  # each cell's unit's number of seeds
    for k in np.unique(seeds):
        chosen = seeds == k
        block = cell_means[chosen].reshape(-1, k, cell_means.shape[1])  # (units, seed positions, resamples)
        weights, seen = draws.counts(sweep, _SEEDS, int(k)).astype(float), ~np.isnan(block)  # (resamples, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            into[unit_of[chosen][::k]] = (np.einsum("ujb,bj->ub", np.where(seen, block, 0.0), weights)
                                          / np.einsum("ujb,bj->ub", seen, weights))
    into[np.unique(units[lacking])] = np.nan
