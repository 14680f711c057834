"""Pareto fronts, hypervolume and seed averaging over the tidy results table.

Every objective is turned into a score to minimise: ``"min"`` → x, ``"max"`` → −x, a number t →
|x − t| (a privacy score may be best at 0). Row a dominates b when score(a) ≤ score(b) everywhere and < somewhere.
Hypervolume = Lebesgue measure of ∪ᵢ [score(pᵢ), score(ref)] (the region the front dominates, up to
the reference point), computed exactly by slicing along the last objective (Zitzler's HSO).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

Direction = str | float  # "max", "min" or a target value


def scores(values, objectives: Mapping[str, Direction]) -> np.ndarray:
    """(n, d) scores to minimise from a DataFrame (the objective columns) or an (n, d) array."""
    if isinstance(values, pd.DataFrame):
        values = values[list(objectives)].to_numpy(dtype=float)
    values = np.atleast_2d(np.asarray(values, dtype=float))
    if values.shape[1] != len(objectives):
        raise ValueError(f"{values.shape[1]} columns for {len(objectives)} objectives")
    out = np.empty_like(values)
    for j, (name, direction) in enumerate(objectives.items()):
        if direction == "min":
            out[:, j] = values[:, j]
        elif direction == "max":
            out[:, j] = -values[:, j]
        elif isinstance(direction, (int, float)) and not isinstance(direction, bool):
            out[:, j] = np.abs(values[:, j] - direction)
        else:
            raise ValueError(f"direction of {name} must be 'max', 'min' or a target number; got {direction!r}")
    return out


def pareto_front(df: pd.DataFrame, objectives: Mapping[str, Direction]) -> pd.DataFrame:
    """The non-dominated rows of ``df`` (in their original order). Rows with NaN in an objective are
    left out; exact duplicates are all kept (neither dominates the other)."""
    s = scores(df, objectives)
    valid = np.flatnonzero(~np.isnan(s).any(axis=1))
    # In lexicographic order no row is dominated by a later one, and a row dominated by anything is
    # dominated by a front member (dominance is transitive): one pass against the front so far.
    order = valid[np.lexsort(s[valid].T[::-1])]
    front: list[int] = []
    for i in order:
        kept = s[front]
        if not (np.all(kept <= s[i], axis=1) & np.any(kept < s[i], axis=1)).any():
            front.append(i)
    return df.iloc[sorted(front)]


def reference_point(df: pd.DataFrame, objectives: Mapping[str, Direction]) -> np.ndarray:
    """The worst value of each objective over the rows of ``df`` (NaN ignored), in the objectives'
    own units — the default hypervolume reference. Pass the whole sweep with its reference rows so
    that every method is measured against the same point."""
    s = scores(df, objectives)
    worst = []
    for j, name in enumerate(objectives):
        valid = np.flatnonzero(~np.isnan(s[:, j]))
        worst.append(df[name].iloc[valid[np.argmax(s[valid, j])]] if len(valid) else np.nan)
    return np.array(worst, dtype=float)


def hypervolume(points, objectives: Mapping[str, Direction], reference=None) -> float:
    """Exact hypervolume dominated by ``points`` (a DataFrame or an (n, d) array in the order of
    ``objectives``) up to ``reference`` (in the objectives' units; default: ``reference_point`` of
    ``points``). Points with NaN, or not strictly better than the reference everywhere, add nothing."""
    if reference is None:
        if not isinstance(points, pd.DataFrame):
            points = pd.DataFrame(np.atleast_2d(np.asarray(points, dtype=float)), columns=list(objectives))
        reference = reference_point(points, objectives)
    ref = scores(np.asarray(reference, dtype=float)[None, :], objectives)[0]
    if np.isnan(ref).any():
        return float("nan")
    s = scores(points, objectives)
    s = s[~np.isnan(s).any(axis=1) & (s < ref).all(axis=1)]
    return float(_hso(s, ref)) if len(s) else 0.0


def hypervolume_curve(points, objectives: Mapping[str, Direction], reference) -> list[float]:
    """The hypervolume of the first n points (in the order given: the order trials finished), for
    n = 1 … len(points): how much of the front a search had found after each trial. One pass: a
    point dominated by the front so far adds nothing; otherwise the front is updated and measured."""
    values = np.atleast_2d(np.asarray(points, dtype=float))
    if values.size == 0:
        return []
    ref = scores(np.asarray(reference, dtype=float)[None, :], objectives)[0]
    s = scores(values, objectives)
    front = np.empty((0, s.shape[1]))
    out, volume = [], 0.0
    for row in s:
        inside = not np.isnan(row).any() and (row < ref).all()
        if inside and not (front <= row).all(axis=1).any():
            front = np.vstack([front[~(row <= front).all(axis=1)], row])
            volume = float(_hso(front, ref))
        out.append(volume)
    return out


def _hso(s: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of minimisation scores ``s`` (all strictly below ``ref``) by slicing."""
    if s.shape[1] == 1:
        return float(ref[0] - s[:, 0].min())
    if s.shape[1] == 2:  # sweep: sorted by x, each point adds the strip below the best y so far
        s = s[np.lexsort((s[:, 1], s[:, 0]))]
        volume, best_y = 0.0, ref[1]
        for (x, y), next_x in zip(s, [*s[1:, 0], ref[0]]):
            best_y = min(best_y, y)
            volume += (next_x - x) * (ref[1] - best_y)
        return volume
    s = s[np.argsort(s[:, -1], kind="stable")]
    cuts = [*s[1:, -1], ref[-1]]
    return sum((cuts[i] - s[i, -1]) * _hso(s[: i + 1, :-1], ref[:-1]) for i in range(len(s)) if cuts[i] > s[i, -1])


def configurations(df: pd.DataFrame, hyperparameters: list[str] | None = None,
                   average_over: list[str] | None = None) -> pd.DataFrame:
    """Trial rows averaged over seeds and unlearning targets (the ``average_over`` columns — by
    default those the sweeps' benchmark declarations name, or ``subject`` for sweeps without a
    declaration — as benchmark papers average their tables over targets): one row per sweep × method ×
    hyper-parameters (but the seed and those) × epoch, with each metric's mean, ``<metric>_std``
    across seeds and targets (NaN for one), ``<metric>_stderr`` of the mean (√Σse² / n),
    ``n_seeds``, ``n_subjects`` (distinct targets averaged over) and ``trials``."""
    hyperparameters = df.attrs.get("hyperparameters", []) if hyperparameters is None else hyperparameters
    average_over = _averaged(df) if average_over is None else list(average_over)
    keys = ["sweep", "method", *[h for h in hyperparameters if h != "seed" and h not in average_over and h in df],
            "epoch"]
    metric_names = [m for m in df.attrs.get("directions", {}) if m in df]
    rows = df[df["role"] == "trial"]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, *metric_names, "n_seeds", "n_subjects", "trials"])
    targets = [a for a in average_over if a in rows]
    if targets:  # one label per target (a combination of the averaged-over columns)
        rows = rows.assign(_target=rows[targets].astype(str).agg("\x1f".join, axis=1)
                           .where(rows[targets].notna().any(axis=1)))
    grouped = rows.groupby(keys, dropna=False, sort=False)  # a hyper-parameter of str and int is unorderable
    out = grouped[metric_names].mean()
    out = out.join(grouped[metric_names].std(ddof=1).add_suffix("_std"))
    errors = [f"{m}_stderr" for m in metric_names if f"{m}_stderr" in df]
    squares = rows[errors].pow(2).join(rows[keys]).groupby(keys, dropna=False, sort=False).sum(min_count=1)
    counts = grouped[[e.removesuffix("_stderr") for e in errors]].count().set_axis(errors, axis=1)
    out[errors] = np.sqrt(squares[errors]) / counts.where(counts > 0)
    out["n_seeds"] = grouped["seed"].nunique() if "seed" in rows else grouped["trial"].nunique()
    out["n_subjects"] = grouped["_target"].nunique() if targets else 1
    out["trials"] = grouped["trial"].agg(lambda t: ", ".join(sorted(set(map(str, t)))))
    result = out.reset_index()
    result.attrs = dict(df.attrs)
    return result


def _averaged(df: pd.DataFrame) -> list[str]:
    """The ``average_over`` names of the declarations of the sweeps in ``df`` (``subject`` for a
    sweep that declares nothing)."""
    records = df.attrs.get("sweeps", {})
    names = sorted(map(str, df["sweep"].dropna().unique())) if "sweep" in df else []
    if not names or not records:
        return ["subject"]
    out: list[str] = []
    for name in names:
        benchmark = (records.get(name) or {}).get("benchmark")
        declared = list(benchmark.get("average_over") or []) if isinstance(benchmark, dict) else ["subject"]
        out += [a for a in declared if a not in out]
    return out
