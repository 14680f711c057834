"""Sweep results → one tidy pandas DataFrame (one row per trial × epoch, plus the reference rows).

Reads the record ``sweeps`` writes under ``<storage>/<sweep>/`` (``reports.record``):
``spec.yaml``, ``environment.json``, ``reference_rows.json`` (the target before unlearning and the
oracle, with every metric's direction), and per trial its ``params.json``, its rows
(``metrics.jsonl``, or Tune's ``result.json``) and ``error.txt`` when it failed.

Columns: ``sweep``, ``role`` (``trial`` | ``target`` | ``oracle``), ``method``, ``trial``, every
sampled hyper-parameter under its own name (``lr``, ``seed``, ``gamma`` …), ``epoch``, ``step``,
every metric and its ``_stderr``, the logged training and topology values, ``status`` (the trial's
state, ``reports.record.STATES``: ``ok``, ``running``, ``pending``, ``diverged``, ``error``),
``error`` (first line of ``error.txt``, or a diverged trial's message), ``path`` and ``model_dir``
(the unlearned model of a finished trial), ``protocol`` (when the benchmark names the evaluation
protocol its numbers follow), ``probes`` (``{metric: [score per probe]}``, the same probes in the same
order in every row of a sweep; None where the row has none), ``proposed_by`` (who proposed the
trial's configuration: ``grid``, ``random``, ``optuna-tpe`` …, ``(startup)`` for a searcher's
random first trials; not a hyper-parameter). The scheduler's learning rate logged each epoch is
``lr_current``, so that ``lr`` is always the sampled one. A trial without any row still has one
(``epoch`` NaN). ``df.attrs`` holds ``directions`` (metric → ``"max"``, ``"min"`` or a target
number), ``hyperparameters`` and ``sweeps`` (name → spec text, environment).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from reports.record import (
    ENVIRONMENT,
    PROBES,
    PROPOSED_BY,
    REFERENCE_ROWS,
    SPEC,
    SWEEP_FILES,
    Trial,
    is_sweep,
    read_json,
    trials,
)

_DROPPED = ("config",)  # Tune's copy of params.json


def load(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Every trial × epoch and the reference rows of the sweeps at ``paths`` (sweep directories,
    or directories whose sub-directories are sweeps)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    sweeps = [sweep for path in paths for sweep in _sweep_dirs(Path(path))]
    names = [sweep.name for sweep in sweeps]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"two sweeps named {duplicated[0]!r}; load them separately")
    rows, known, scales, hyperparameters, records = [], {}, {}, [], {}
    for sweep in sweeps:
        refs = read_json(sweep / REFERENCE_ROWS) or {}
        benchmark = refs.get("benchmark") if isinstance(refs.get("benchmark"), dict) else None
        declared = (benchmark or {}).get("metrics") or {}
        recorded = refs.get("directions", {})
        _merge_directions(known, {**{m: d["direction"] for m, d in declared.items()
                                     if m not in recorded and "direction" in d}, **recorded}, sweep.name)
        _merge_scales(scales, {m: d["scale"] for m, d in declared.items() if d.get("scale") is not None}, sweep.name)
        sweep_rows = [dict(row, sweep=sweep.name) for row in refs.get("rows", [])]
        for trial in trials(sweep):
            params, trial_rows = _trial(trial, sweep.name)
            hyperparameters += [key for key in params if key not in hyperparameters and key != PROPOSED_BY]
            sweep_rows += trial_rows
        protocol = (benchmark or {}).get("protocol")
        rows += [_probes(row if not protocol else {"protocol": protocol, **row}) for row in sweep_rows]
        records[sweep.name] = {"path": str(sweep), "spec": _read_text(sweep / SPEC),
                               "environment": read_json(sweep / ENVIRONMENT), "benchmark": benchmark}
    df = pd.DataFrame(rows)
    for column in ("sweep", "role", "method", "trial", "status", "error", "epoch"):
        if column not in df:
            df[column] = pd.Series(dtype=float if column == "epoch" else object)
    front = ["sweep", "role", "method", "trial", *hyperparameters, "epoch", "status", "error"]
    df = df[front + [c for c in df.columns if c not in front]]
    df.attrs = {"directions": known, "scales": scales, "hyperparameters": hyperparameters, "sweeps": Shared(records)}
    return df


class Shared(dict):
    """The sweeps' records in ``df.attrs``, read-only: pandas deep-copies ``attrs`` into every frame
    derived from ``df``, and copying each spec and environment record made the report several
    times slower; every derived frame shares this one instead."""

    def __deepcopy__(self, memo):
        return self


def _probes(row: dict) -> dict:
    """The row with its ``<metric>_probes`` lists gathered into one ``probes`` dict (None without)."""
    scores = {k.removesuffix(PROBES): v for k, v in row.items() if k.endswith(PROBES) and isinstance(v, list)}
    return {**{k: v for k, v in row.items() if not k.endswith(PROBES)}, "probes": scores or None}


def declaration(df: pd.DataFrame, sweep: str | None = None) -> dict:
    """The benchmark declaration of ``sweep`` (default: the one sweep of ``df``), as recorded in its
    ``reference_rows.json``, with every key present: ``name``, ``needs_oracle``, ``metrics`` (name →
    ``direction``, ``role``, ``scale``, ``description``), ``fronts`` (``x``, ``y``, ``size``),
    ``trajectories``, ``selection`` (``None`` when not declared), ``average_over``, ``facets``,
    ``protocol`` (the evaluation protocol the numbers follow, "" when the benchmark names none) and
    ``declared`` (``False`` for a sweep whose record has no declaration: then nothing is declared
    and ``average_over`` defaults to ``["subject"]``)."""
    records = df.attrs.get("sweeps", {})
    if sweep is None:
        names = sorted(map(str, df["sweep"].dropna().unique())) if "sweep" in df else []
        names = names or sorted(records)
        if len(names) != 1:
            raise ValueError(f"declaration() of a frame of {len(names)} sweeps: name one (sweep=...)")
        sweep = names[0]
    record = records.get(sweep) or {}
    return _normalise(record.get("benchmark"))


def _normalise(benchmark) -> dict:
    if not isinstance(benchmark, dict):
        return {"name": None, "needs_oracle": False, "metrics": {}, "fronts": [], "trajectories": [],
                "selection": None, "average_over": ["subject"], "facets": [], "protocol": "", "declared": False}
    fronts = []
    for front in benchmark.get("fronts") or []:
        if isinstance(front, dict) and front.get("x") and front.get("y"):
            fronts.append({"x": front["x"], "y": front["y"], "size": front.get("size") or None})
        elif isinstance(front, (list, tuple)) and len(front) >= 2:
            fronts.append({"x": front[0], "y": front[1], "size": front[2] if len(front) > 2 else None})
    selection = benchmark.get("selection")
    if isinstance(selection, dict) and selection.get("forget") and selection.get("retain"):
        selection = {"forget": selection["forget"], "retain": selection["retain"],
                     "oracle_tolerance": selection.get("oracle_tolerance"),
                     "target_fraction": selection.get("target_fraction"),
                     "floors": dict(selection.get("floors") or {})}
    else:
        selection = None
    metrics = {name: {"direction": spec.get("direction"), "role": spec.get("role"), "scale": spec.get("scale") or 1,
                      "description": spec.get("description", "")}
               for name, spec in (benchmark.get("metrics") or {}).items() if isinstance(spec, dict)}
    return {"name": benchmark.get("name"), "needs_oracle": bool(benchmark.get("needs_oracle", False)),
            "metrics": metrics, "fronts": fronts, "trajectories": list(benchmark.get("trajectories") or []),
            "selection": selection, "average_over": list(benchmark.get("average_over") or []),
            "facets": list(benchmark.get("facets") or []), "protocol": str(benchmark.get("protocol") or ""),
            "declared": True}


def scale(df: pd.DataFrame, metric: str) -> float:
    """The declared scale of ``metric`` (1: values in [0, 1]; 100: a paper's ×100 scale); 1 when
    no loaded sweep declares one."""
    return df.attrs.get("scales", {}).get(metric, 1)


def facet_columns(df: pd.DataFrame) -> list[str]:
    """The declared facets of the one sweep of ``df`` that are columns of ``df``."""
    return [f for f in declaration(df)["facets"] if f in df]


def facet_groups(df: pd.DataFrame) -> list[tuple[dict, pd.DataFrame]]:
    """The rows of a one-sweep frame split by facet combination: ``[(values, rows), ...]`` in sorted
    order, ``values`` being facet → value (``[({}, df)]`` without facets). A row that leaves a facet
    empty (a reference shared by every value) belongs to every combination."""
    columns = facet_columns(df)
    if not columns:
        return [({}, df)]
    combos = df[columns].dropna().drop_duplicates()
    keys = [tuple(row) for row in combos.itertuples(index=False)]
    try:
        keys = sorted(keys)
    except TypeError:  # values of several types
        keys = sorted(keys, key=lambda k: tuple(map(str, k)))
    out = []
    for key in keys:
        mask = pd.Series(True, index=df.index)
        for column, value in zip(columns, key):
            mask &= df[column].isna() | (df[column] == value)
        out.append((dict(zip(columns, key)), df[mask]))
    return out or [({}, df)]


def facet_label(values: dict) -> str:
    """``forget_size=2, split=a`` for a facet combination (empty without facets)."""
    return ", ".join(f"{name}={_short(value)}" for name, value in values.items())


def _short(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def directions(df: pd.DataFrame) -> dict:
    """Metric → direction as recorded in the sweeps' ``reference_rows.json``."""
    if "directions" not in df.attrs:
        raise KeyError("this DataFrame carries no metric directions (df.attrs['directions']); "
                       "build it with reports.load() or read it back from Parquet")
    return dict(df.attrs["directions"])


def metrics(df: pd.DataFrame) -> list[str]:
    """The metric columns present in ``df`` (those with a direction), in column order."""
    known = directions(df)
    return [column for column in df.columns if column in known]


def export(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as ``.csv`` or ``.parquet`` (by suffix). Parquet keeps ``df.attrs`` (directions,
    hyper-parameters, sweep records) in its metadata; CSV is the plain table."""
    path = Path(path)
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        mixed = [c for c in df.columns  # e.g. a hyper-parameter sampled from [8, "auto"]: Arrow needs one type
                 if df[c].dtype == object and df[c].dropna().map(type).nunique() > 1]
        df.astype({c: "string" for c in mixed}).to_parquet(path, index=False)
    else:
        raise ValueError(f"export to .csv or .parquet; got {path.name!r}")
    return path


def _sweep_dirs(path: Path) -> list[Path]:
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory")
    if is_sweep(path):
        return [path]
    found = sorted(child for child in path.iterdir() if child.is_dir() and is_sweep(child))
    if not found:
        raise FileNotFoundError(f"no sweep results in {path} (a sweep directory holds "
                                f"{', '.join(SWEEP_FILES)})")
    return found


def _trial(trial: Trial, sweep: str) -> tuple[dict, list[dict]]:
    """The sampled hyper-parameters and the rows of one trial."""
    params = {key: _scalar(value) for key, value in trial.params.items()}
    model = trial.model_dir
    base = {"sweep": sweep, "role": "trial", "method": trial.method, "trial": trial.trial_id,
            "path": str(trial.path), "model_dir": str(model) if model else None,
            "status": trial.state, "error": trial.error}
    rows = []
    for result in trial.rows or [{}]:
        logged = {("lr_current" if key == "lr" else key): value if key.endswith(PROBES) else _scalar(value)
                  for key, value in result.items() if key not in _DROPPED}
        rows.append({**logged, **params, **base})
    return params, rows


def _merge_directions(into: dict, new: dict, sweep: str) -> None:
    for metric, direction in new.items():
        if into.setdefault(metric, direction) != direction:
            raise ValueError(f"sweep {sweep!r} records direction {direction!r} for {metric}, another sweep "
                             f"{into[metric]!r}; load them separately")


def _merge_scales(into: dict, new: dict, sweep: str) -> None:
    for metric, value in new.items():
        if into.setdefault(metric, value) != value:
            raise ValueError(f"sweep {sweep!r} declares scale {value!r} for {metric}, another sweep "
                             f"{into[metric]!r}; load them separately")


def _scalar(value):
    """Nested values (lists, dicts) as JSON text, so that every cell is a scalar."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def _read_text(path: Path) -> str | None:
    return path.read_text(errors="replace") if path.is_file() else None
