"""Per-method summary of a sweep: the configuration chosen by a stated rule, and hypervolumes.

Selection rule: among the finished configurations (seeds averaged) at their final epoch — the
model a trial keeps — the highest mean retain-QA recall among those whose mean forget-QA recall is
at most the oracle's + 0.05; ties go to the lower forget-QA recall.
Hypervolume of each method's front (every configuration × epoch) per figure pair, against one
reference point per sweep and pair: the worst value of each metric over the sweep's finished trials,
the target and the oracle, so that methods are compared on the same box.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.figures import FRONT_PAIRS, ok_trials, reference_row
from reports.results import directions
from reports.pareto import configurations, hypervolume, reference_point

FORGET, RETAIN, TOLERANCE = "forget_qa_rouge_l_recall", "retain_qa_rouge_l_recall", 0.05
RULE = (f"Best configuration per method: among finished configurations (seeds averaged) at their final epoch, the "
        f"highest {RETAIN} among those whose {FORGET} is at most the oracle's + {TOLERANCE:g}; ties go to the "
        f"lower {FORGET}.")


def select(df: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep × method: the chosen configuration (seed means) and ``note`` saying why
    there is none when no configuration meets the rule."""
    out = []
    for (sweep, method), trials in df[df["role"] == "trial"].groupby(["sweep", "method"], sort=True):
        oracle = reference_row(df[df["sweep"] == sweep], "oracle")
        finished = ok_trials(trials)
        final = configurations(finished[finished["final"].eq(True)] if len(finished) else finished)
        row = {"sweep": sweep, "method": method}
        if oracle is None or pd.isna(oracle.get(FORGET)) or FORGET not in final or RETAIN not in final:
            out.append({**row, "note": f"rule not applicable: needs {FORGET} of the oracle and {RETAIN}"})
            continue
        bound = oracle[FORGET] + TOLERANCE
        eligible = final[(final[FORGET] <= bound) & final[RETAIN].notna()]
        if eligible.empty:
            out.append({**row, "note": f"no finished configuration has {FORGET} ≤ {bound:.3f}"})
            continue
        best = eligible.sort_values([RETAIN, FORGET], ascending=[False, True], kind="stable").iloc[0]
        out.append({**best.to_dict(), "note": ""})
    return pd.DataFrame(out)


def hypervolumes(df: pd.DataFrame, pairs=FRONT_PAIRS) -> pd.DataFrame:
    """One row per sweep × method × pair: ``hypervolume`` of the method's front and the sweep's
    ``reference`` point (x, y)."""
    out = []
    for sweep, sweep_df in df.groupby("sweep", sort=True):
        finished = ok_trials(sweep_df)
        pool = pd.concat([finished, sweep_df[sweep_df["role"].isin(["target", "oracle"])]])
        points = configurations(finished)
        for x, y in pairs:
            if x not in sweep_df or y not in sweep_df:
                continue
            objectives = {x: directions(df)[x], y: directions(df)[y]}
            reference = reference_point(pool, objectives)
            for method in sorted(sweep_df.loc[sweep_df["role"] == "trial", "method"].unique()):
                mine = points[points["method"] == method]
                volume = hypervolume(mine, objectives, reference) if len(mine) else np.nan
                out.append({"sweep": sweep, "method": method, "x": x, "y": y, "hypervolume": volume,
                            "reference": tuple(reference)})
    return pd.DataFrame(out, columns=["sweep", "method", "x", "y", "hypervolume", "reference"])
