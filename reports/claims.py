"""The seed paper's claims (Unilogit, ACL 2025), checked on a sweep's own results with intervals.

1. **Fronts**: Unilogit's forget-vs-retain front dominates NPO's and UnDIAL's: the hypervolume
   difference of each declared front (``uncertainty.compare``: paired bootstrap over probes).
2. **Soft labels**: Unilogit's self-distillation target is closer to the oracle's outputs than
   UnDIAL's: KL(oracle ‖ label) on the forget facts (the declared soft-label KL metrics), Unilogit's
   label at its finished trials' last epoch against UnDIAL's fixed label (each γ recorded).
3. **Models**: the unlearned model is closer to the oracle: KL(oracle ‖ model) of each method's
   selected configuration (the declared rule).
KL values are token means recorded without per-probe scores, so their intervals are normal ones
(difference ± 1.96 × the root of the summed squared standard errors of the token means; the two
share their tokens, which makes this interval conservative). A verdict is stated only where an
interval excludes zero.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reports import summary, uncertainty
from reports.figures import kl_metrics, ok_trials, reference_row, softlabels

Z95 = 1.959964
SUBJECT, RIVALS = "unilogit", ("npo", "undial")
COLUMNS = ["claim", "comparison", "difference", "difference_lo", "difference_hi", "verdict"]


def check(df: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison that the sweep's results allow (none without Unilogit and a rival)."""
    methods = set(df.loc[df["role"] == "trial", "method"].dropna())
    rivals = [m for m in RIVALS if m in methods]
    if SUBJECT not in methods or not rivals:
        return pd.DataFrame(columns=COLUMNS)
    rows = _fronts(df, rivals) + _softlabels(df) + _models(df, rivals)
    return pd.DataFrame(rows, columns=COLUMNS)


def _fronts(df: pd.DataFrame, rivals: list[str]) -> list[dict]:
    rows = []
    for x, y in summary.front_pairs(df):
        for _, row in uncertainty.compare(df, x, y).iterrows():
            pair = {row["a"], row["b"]}
            rival = next((r for r in rivals if pair == {SUBJECT, r}), None)
            if rival is None:
                continue
            sign = 1 if row["a"] == SUBJECT else -1  # always Unilogit − rival
            lo, hi = sorted((sign * row["difference_lo"], sign * row["difference_hi"]))
            rows.append(_row(f"1. fronts ({y} vs {x}): hypervolume, higher is better",
                             f"{SUBJECT} − {rival}", sign * row["difference"], lo, hi, higher_better=True,
                             label=row["verdict"]))
    return rows


def _softlabels(df: pd.DataFrame) -> list[dict]:
    """Unilogit's label (its finished trials' last epochs, pooled) against each UnDIAL label."""
    labels = softlabels(df)
    mine = _metric(df, SUBJECT)
    if mine is None:
        return []
    final = _last(ok_trials(df)[lambda t: t["method"] == SUBJECT])
    if final.empty or final[mine].isna().all():
        return []
    value, se = float(final[mine].mean()), _pooled_se(final, mine)
    target = reference_row(df, "target")
    rows = []
    for label in (lab for lab in labels if lab.startswith("undial")):
        other = _metric(df, label)
        if other is None:
            continue
        source = final if other in final and final[other].notna().any() else \
            (pd.DataFrame([target]) if target is not None and pd.notna(target.get(other)) else None)
        if source is None:
            continue
        theirs, their_se = float(source[other].mean()), _pooled_se(source, other)
        rows.append(_normal("2. soft labels: KL(oracle ‖ label) on forget facts, lower is better",
                            f"{SUBJECT} − {label}", value - theirs, se, their_se, higher_better=False))
    return rows


def _models(df: pd.DataFrame, rivals: list[str]) -> list[dict]:
    metric = _kl(df, softlabel=False, other="model")
    if metric is None:
        return []
    picks = summary.select(df)
    picks = picks[picks[metric].notna()] if metric in picks else picks.iloc[:0]
    by = {row["method"]: row for _, row in picks.iterrows()}
    if SUBJECT not in by:
        return []
    rows = []
    for rival in (r for r in rivals if r in by):
        a, b = by[SUBJECT], by[rival]
        rows.append(_normal(f"3. models: {metric} of the selected configurations, lower is better",
                            f"{SUBJECT} − {rival}", a[metric] - b[metric], a.get(f"{metric}_stderr", math.nan),
                            b.get(f"{metric}_stderr", math.nan), higher_better=False))
    return rows


def _metric(df: pd.DataFrame, label: str) -> str | None:
    return _kl(df, softlabel=True, other=label)


def _kl(df: pd.DataFrame, *, softlabel: bool, other: str) -> str | None:
    """The declared KL(oracle ‖ ``other``) with values, on the forget facts when recorded, else on the
    first token set."""
    found = [kl for kl in kl_metrics(df) if kl["softlabel"] == softlabel and (kl["a"], kl["b"]) == ("oracle", other)
             and df[kl["metric"]].notna().any()]
    best = next((kl for kl in found if kl["tokens"] == "forget_facts"), found[0] if found else None)
    return best["metric"] if best else None


def _last(trials: pd.DataFrame) -> pd.DataFrame:
    if trials.empty:
        return trials
    return trials.sort_values("epoch").groupby(["sweep", "trial"], sort=False).tail(1)


def _pooled_se(rows: pd.DataFrame, metric: str) -> float:
    """The standard error of the mean of ``rows[metric]`` from each row's own standard error."""
    errors = rows.get(f"{metric}_stderr", pd.Series(np.nan, index=rows.index)).dropna()
    return float(np.sqrt((errors ** 2).sum()) / len(errors)) if len(errors) else math.nan


def _normal(claim: str, comparison: str, difference: float, se_a, se_b, *, higher_better: bool) -> dict:
    se = math.sqrt(float(se_a) ** 2 + float(se_b) ** 2)
    return _row(claim, comparison, difference, difference - Z95 * se, difference + Z95 * se,
                higher_better=higher_better)


def _row(claim: str, comparison: str, difference: float, lo: float, hi: float, *, higher_better: bool,
         label: str | None = None) -> dict:
    a, b = comparison.split(" − ")
    if any(math.isnan(v) for v in (difference, lo, hi)):
        verdict = uncertainty.NO_INTERVAL if label is None else label
    elif lo > 0 or hi < 0:
        ahead = a if (lo > 0) == higher_better else b
        verdict = f"{ahead} ahead: the claim {'holds' if ahead == a else 'fails'} here"
    else:
        verdict = uncertainty.INDISTINGUISHABLE
    return {"claim": claim, "comparison": comparison, "difference": difference, "difference_lo": lo,
            "difference_hi": hi, "verdict": verdict}
