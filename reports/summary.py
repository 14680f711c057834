"""Per-method summary of a sweep: the configuration chosen by the benchmark's declared rule, and
hypervolumes of its declared fronts — per facet combination (benchmark parameters swept as a grid
are separate problems).

Selection rule (``selection`` in the declaration; ``rule(declaration)`` states it as a sentence):
among the finished configurations (seeds and ``average_over`` targets averaged) at their final
epoch — the model a trial keeps — those whose ``forget`` metric is at most the oracle's +
``oracle_tolerance`` × the metric's scale (when an oracle row has it), else at most
``target_fraction`` × the target's; and whose every ``floors`` metric that the target has is at
least its fraction × the target's value. The highest ``retain`` wins; ties go to the lower forget.
Hypervolume of each method's front (every configuration × epoch) per declared front, against one
reference point per sweep, facet combination and front: the worst value of each metric over the
finished trials, the target and the oracle, so that methods are compared on the same box.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.figures import ok_trials, reference_row
from reports.pareto import configurations, hypervolume, reference_point
from reports.results import declaration, directions, facet_groups, facet_label

NO_RULE = "rule not applicable: the sweep's record declares no selection rule"


def rule(declared: dict) -> str:
    """The selection rule of a declaration (``reports.results.declaration``) as one sentence."""
    selection = declared.get("selection")
    if not selection:
        return "This sweep's record declares no selection rule (a sweep recorded before benchmarks declared " \
               "one), so no configuration is selected."
    forget, retain = selection["forget"], selection["retain"]
    averaged = ", ".join(["seeds", *declared.get("average_over", [])])
    per = ", ".join(declared.get("facets", []))
    tolerance, fraction = selection.get("oracle_tolerance"), selection.get("target_fraction")
    scale = (declared.get("metrics", {}).get(forget) or {}).get("scale") or 1
    if tolerance is not None and fraction is not None:
        bound = (f"at most the oracle's + {_g(tolerance * scale)} (without an oracle value: at most "
                 f"{_g(fraction)} × the target's)")
    elif tolerance is not None:
        bound = f"at most the oracle's + {_g(tolerance * scale)}"
    elif fraction is not None:
        bound = f"at most {_g(fraction)} × the target's"
    else:
        bound = "bounded by nothing declared (no configuration qualifies)"
    floors = "".join(f", and whose {metric} is at least {_g(share)} × the target's"
                     for metric, share in selection.get("floors", {}).items())
    return (f"Best configuration per method{f' and {per}' if per else ''}: among finished configurations "
            f"({averaged} averaged) at their final epoch, the highest {retain} among those whose {forget} is "
            f"{bound}{floors}; ties go to the lower {forget}.")


def select(df: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep × facet combination × method: the chosen configuration (means over seeds
    and targets), the facet values, ``facet`` (their label), ``bound`` (the forget bound applied)
    and ``note`` saying why there is none when no configuration meets the rule or it cannot apply."""
    out = []
    for sweep in sorted(df["sweep"].dropna().unique()):
        sweep_df = df[df["sweep"] == sweep]
        declared = declaration(sweep_df, sweep)
        for values, group in facet_groups(sweep_df):
            trials = group[group["role"] == "trial"]
            for method in sorted(trials["method"].dropna().unique()):
                row = {"sweep": sweep, **values, "facet": facet_label(values), "method": method}
                pick, bound, note = _select(group, trials[trials["method"] == method], declared)
                out.append({**(pick or {}), **row, "bound": bound, "note": note})
    if not out:
        return pd.DataFrame(columns=["sweep", "facet", "method", "bound", "note"])
    table = pd.DataFrame(out)
    front = [c for c in ("sweep", *_facets(df), "facet", "method") if c in table]
    return table[front + [c for c in table.columns if c not in front]]


def _facets(df: pd.DataFrame) -> list[str]:
    names: list[str] = []
    for sweep in sorted(df["sweep"].dropna().unique()):
        names += [f for f in declaration(df, sweep)["facets"] if f not in names]
    return names


def _select(group: pd.DataFrame, trials: pd.DataFrame, declared: dict) -> tuple[dict | None, float, str]:
    selection = declared.get("selection")
    if not selection:
        return None, np.nan, NO_RULE
    forget, retain = selection["forget"], selection["retain"]
    missing = [m for m in (forget, retain) if m not in group or group.loc[group["role"] == "trial", m].isna().all()]
    target, oracle = reference_row(group, "target"), reference_row(group, "oracle")
    tolerance, fraction = selection.get("oracle_tolerance"), selection.get("target_fraction")
    scale = (declared["metrics"].get(forget) or {}).get("scale") or 1
    if oracle is not None and tolerance is not None and pd.notna(oracle.get(forget)):
        bound, against = float(oracle[forget]) + tolerance * scale, "the oracle's"
    elif target is not None and fraction is not None and pd.notna(target.get(forget)):
        bound, against = fraction * float(target[forget]), "the target's"
    else:
        bound, against = np.nan, None
    finished = ok_trials(trials)
    final = configurations(finished[finished["final"].eq(True)] if "final" in finished and len(finished) else
                           finished.iloc[:0])
    if final.empty:
        return None, bound, "no finished configuration"
    if missing:
        return None, bound, f"rule not applicable: no trial records {' or '.join(missing)}"
    if against is None:
        return None, bound, (f"rule not applicable: needs {forget} of an oracle row or of the target row "
                             "(with the declared tolerance or fraction); the record has neither")
    eligible = final[(final[forget] <= bound) & final[retain].notna()]
    if eligible.empty:
        return None, bound, f"no finished configuration has {forget} ≤ {bound:.4g} ({against} bound)"
    for metric, share in selection.get("floors", {}).items():
        if target is None or pd.isna(target.get(metric)) or metric not in final:
            continue  # a floor applies where the target and the trials record the metric
        floor = share * float(target[metric])
        kept = eligible[eligible[metric] >= floor]
        if kept.empty:
            return None, bound, (f"no finished configuration with {forget} ≤ {bound:.4g} keeps {metric} ≥ "
                                 f"{floor:.4g} ({_g(share)} × the target's)")
        eligible = kept
    best = eligible.sort_values([retain, forget], ascending=[False, True], kind="stable").iloc[0]
    return best.to_dict(), bound, ""


def hypervolumes(df: pd.DataFrame, fronts=None) -> pd.DataFrame:
    """One row per sweep × facet combination × method × front: ``hypervolume`` of the method's
    front and the shared ``reference`` point (x, y). ``fronts``: ``(x, y)`` pairs or ``{"x", "y"}``
    dicts; default: each sweep's declared fronts (a declared ``size`` does not enter the volume)."""
    out, known = [], directions(df)
    for sweep in sorted(df["sweep"].dropna().unique()):
        sweep_df = df[df["sweep"] == sweep]
        pairs = _pairs(declaration(sweep_df, sweep)["fronts"] if fronts is None else fronts)
        for values, group in facet_groups(sweep_df):
            finished = ok_trials(group)
            pool = pd.concat([finished, group[group["role"].isin(["target", "oracle"])]])
            points = configurations(finished)
            methods = sorted(group.loc[group["role"] == "trial", "method"].dropna().unique())
            for x, y in pairs:
                if x not in group or y not in group or x not in known or y not in known:
                    continue
                objectives = {x: known[x], y: known[y]}
                reference = reference_point(pool, objectives)
                for method in methods:
                    mine = points[points["method"] == method]
                    volume = hypervolume(mine, objectives, reference) if len(mine) else np.nan
                    out.append({"sweep": sweep, **values, "facet": facet_label(values), "method": method, "x": x,
                                "y": y, "hypervolume": volume, "reference": tuple(reference)})
    columns = ["sweep", "facet", "method", "x", "y", "hypervolume", "reference"]
    return pd.DataFrame(out, columns=None if out else columns)


def front_pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """The declared fronts ``(x, y)`` of the sweeps in ``df`` whose two metrics have a direction and
    a value in some trial row (what a hypervolume can be computed on)."""
    known, trials = directions(df), df[df["role"] == "trial"]
    pairs = _pairs([f for sweep in sorted(df["sweep"].dropna().unique()) for f in declaration(df, sweep)["fronts"]])
    return [(x, y) for x, y in pairs
            if all(m in known and m in trials and trials[m].notna().any() for m in (x, y))]


def _pairs(fronts) -> list[tuple[str, str]]:
    pairs = []
    for front in fronts:
        x, y = (front["x"], front["y"]) if isinstance(front, dict) else tuple(front)[:2]
        if (x, y) not in pairs:
            pairs.append((x, y))
    return pairs


def _g(value) -> str:
    return f"{value:g}"
