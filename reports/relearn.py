"""Robustness to relearning (a sweep run with ``eval.relearn``): per method, the forget metrics of
its selected configuration before and after a relearning attack (fine-tuning on a few forget
examples), beside the target's after the same relearning (the baseline: what relearning alone
brings back). Every number is scored on the same probes: those the relearning did not train on.

Columns the trials and the target row record: ``<metric>_relearned`` (after relearning) and, when
part of the forget set was held back, ``<metric>_heldout`` (before it, on the held-back probes);
else the metric itself is the value before. Metrics are the declared ``forget`` ones.
"""

from __future__ import annotations

import pandas as pd

from reports.figures import ok_trials, reference_row
from reports.pareto import configurations
from reports.results import declaration, directions, facet_groups, facet_label

RELEARNED, HELDOUT = "_relearned", "_heldout"
SETTINGS = ("relearn_examples", "relearn_steps", "relearn_lr", "relearn_heldout_groups")


def relearned_metrics(df: pd.DataFrame, sweep: str) -> list[str]:
    """The declared forget metrics of ``sweep`` with relearned values, the selection's forget first."""
    declared = declaration(df, sweep)
    rows = df[df["sweep"] == sweep]
    forget = [m for m, spec in declared["metrics"].items() if spec.get("role") == "forget"]
    first = (declared.get("selection") or {}).get("forget")
    ordered = ([first] if first in forget else []) + [m for m in forget if m != first]
    return [m for m in ordered if m + RELEARNED in rows and rows[m + RELEARNED].notna().any()]


def before(row, metric: str) -> float:
    """A row's value before relearning on the probes scored after it."""
    held = row.get(metric + HELDOUT)
    return held if held is not None and pd.notna(held) else row.get(metric, float("nan"))


def table(df: pd.DataFrame, picks: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per sweep × facet combination × (the target, then each method): ``who``,
    ``configuration`` and per relearned metric ``<metric>`` (before) and ``<metric>_relearned``
    (after). A method's row is its selected configuration (``picks``: ``summary.select(df)``); when
    none qualifies, its finished configuration with the best (first) relearned forget metric at the
    final epoch, and ``configuration`` says so. Empty when no sweep relearned."""
    if picks is None:
        from reports import summary

        picks = summary.select(df)
    out = []
    for sweep in sorted(df["sweep"].dropna().unique()):
        names = relearned_metrics(df, sweep)
        if not names:
            continue
        for values, group in facet_groups(df[df["sweep"] == sweep]):
            label = facet_label(values)
            base = {"sweep": sweep, **values, "facet": label}
            target = reference_row(group, "target")
            if target is not None:
                out.append({**base, "who": "target", "configuration": "before unlearning",
                            **_values(target, names)})
            final = ok_trials(group)
            final = configurations(final[final["final"].eq(True)] if "final" in final else final.iloc[:0])
            for method in sorted(group.loc[group["role"] == "trial", "method"].dropna().unique()):
                row, how = _configuration(picks, sweep, label, method, final, names[0])
                out.append({**base, "who": method, "configuration": how,
                            **(_values(row, names) if row is not None else {})})
    return pd.DataFrame(out)


def settings(df: pd.DataFrame, sweep: str) -> dict:
    """What the sweep's relearning was (from its target row): examples, steps, lr, held-back groups."""
    rows = df[(df["sweep"] == sweep) & (df["role"] == "target")]
    return {k: rows[k].dropna().iloc[0] for k in SETTINGS if k in rows and rows[k].notna().any()}


def _values(row, names: list[str]) -> dict:
    after = [m + RELEARNED + tail for m in names for tail in ("", "_stderr")]
    return {**{m: before(row, m) for m in names}, **{name: row.get(name) for name in after}}


def _configuration(picks: pd.DataFrame, sweep: str, label: str, method: str, final: pd.DataFrame, forget: str):
    mine = picks[(picks["sweep"] == sweep) & (picks["facet"] == label) & (picks["method"] == method)] \
        if len(picks) else picks
    if len(mine) and not mine.iloc[0].get("note"):
        pick = mine.iloc[0]
        return pick, f"selected (epoch {pick.get('epoch')}; trials {pick.get('trials')})"
    own = final[(final["method"] == method) & final[forget].notna()] if forget in final else final.iloc[:0]
    if own.empty:
        return None, "no finished configuration"
    best = own.sort_values(forget, ascending=directions(final).get(forget) != "max", kind="stable").iloc[0]
    return best, f"best {forget}, none selected (trials {best.get('trials')})"
