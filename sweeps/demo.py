"""``unlearn demo``: a whole sweep on this machine, offline, ending in ``runs/demo/report.html``.

The default runs the five methods on SmolLM2-135M-Instruct (``specs/demo.yaml``); ``--quick`` runs
the tiny sweep (``specs/tiny.yaml``) through the same stack — preparation of a target and a
retrained oracle, Ray Tune trials of Ray Train + DeepSpeed worker groups, per-epoch evaluation,
the report. A second run resumes the same sweep (finished trials are kept, prepared models are
reused) and rewrites the report.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

SPECS = Path(__file__).resolve().parent / "specs"


def main(storage: str = "runs", quick: bool = False, progress=None, seed: int | None = None) -> Path:
    """The SmolLM2 demo (``specs/demo.yaml``), or with ``quick`` the tiny sweep, into
    ``<storage>/demo``; ``seed`` replaces the benchmark's seed (another draw of people and probes). A
    sweep of another kind or seed already there is refused, not mixed."""
    import reports
    from reports import summary
    from reports.record import SPEC
    from sweeps import spec as specs
    from sweeps.run import run_sweep

    spec = dataclasses.replace(specs.load(SPECS / ("tiny.yaml" if quick else "demo.yaml")), name="demo",
                               storage=storage)
    if seed is not None:
        spec = specs.with_benchmark_seed(spec, seed)
    sweep_dir = Path(storage).resolve() / "demo"
    options = {"progress": progress} if progress else {}
    run_sweep(spec, resume=(sweep_dir / SPEC).is_file(), **options)
    df = reports.load([sweep_dir])
    report = sweep_dir / "report.html"
    reports.render(df, report)
    print_summary(df, summary)
    print(f"report: {report}")
    return report


def print_summary(df, summary) -> None:
    """Per method: the selected configuration's forget / retain metrics (the benchmark's declared
    selection), the hypervolume of its first declared front, and the soft-label KL to the oracle on
    the forget facts (Unilogit's own label; UnDIAL's first γ)."""
    from reports.figures import softlabels
    from reports.results import declaration

    if "final" not in df or not df["final"].eq(True).any():
        failed = df[df["role"] == "trial"]
        print(f"no trial finished ({len(failed)} failed; their error.txt is beside each trial's results)")
        return
    declared = declaration(df)
    selection = declared["selection"] or {}
    forget, retain = selection.get("forget"), selection.get("retain")
    picks = summary.select(df)
    volumes = summary.hypervolumes(df)
    if declared["fronts"] and len(volumes):
        first = declared["fronts"][0]
        volumes = volumes[(volumes["x"] == first["x"]) & (volumes["y"] == first["y"])]
    else:
        volumes = volumes.iloc[:0]
    volumes = volumes.set_index(["facet", "method"])["hypervolume"] if len(volumes) else {}
    final = df[(df["role"] == "trial") & df["final"].eq(True)]
    faceted = bool(declared["facets"]) and picks["facet"].astype(bool).any()
    name = 24 if faceted else 10
    heads = _headers(forget or "-", retain or "-")
    print(f"{'method':<{name}}" + "".join(f"{h:>10}" for h in heads) + f"{'hypervol.':>10}"
          f"{'soft-label KL(oracle‖label), facts':>38}")
    for _, pick in picks.sort_values(["facet", "method"], kind="stable").iterrows():
        method = pick["method"]
        mine = final[final["method"] == method]
        for column in declared["facets"]:
            value = pick.get(column)
            if column in mine and value is not None and value == value:  # not NaN
                mine = mine[mine[column] == value]
        label = _softlabel_metric(final, method, softlabels(df))
        kl = mine[label].mean() if label else math.nan
        cells = [pick.get(forget, math.nan) if forget else math.nan, pick.get(retain, math.nan) if retain else math.nan,
                 volumes.get((pick["facet"], method), math.nan)]
        title = f"{method} {pick['facet']}" if faceted else method
        print(f"{title:<{name}}" + "".join(f"{_cell(v):>10}" for v in cells) + f"{_cell(kl):>38}")
    print(f"{heads[0]} / {heads[1]}: {forget} / {retain} of the configuration the report's rule selects "
          "('-': none meets it)" if selection else "the sweep's record declares no selection rule")
    print_verdicts(df)


def print_verdicts(df) -> None:
    """The report's verdicts in short: each pair of methods on the first declared front (hypervolume
    difference and its 95 % interval), then the seed paper's claims (``reports.claims``)."""
    from reports import claims, summary, uncertainty

    pairs = summary.front_pairs(df)
    if pairs:
        x, y = pairs[0]
        print(f"fronts compared ({y} vs {x}), hypervolume a − b [95 % interval]:")
        for _, row in uncertainty.compare(df, x, y).iterrows():
            print(f"  {row['a'] + ' − ' + row['b']:<22}{_span(row)}  {row['verdict']}")
    checked = claims.check(df)
    if len(checked):
        print("the seed paper's claims, difference [95 % interval]:")
        for _, row in checked.iterrows():
            print(f"  {row['claim']}: {row['comparison']} {_span(row)}  {row['verdict']}")


def _span(row) -> str:
    return f"{_cell(row['difference'])} [{_cell(row['difference_lo'])}, {_cell(row['difference_hi'])}]"


def _softlabel_metric(final, method: str, labels: list[str]) -> str | None:
    """By the naming convention ``softlabel_kl_oracle_<label>_forget_facts``: the method's own label,
    or for UnDIAL the first ``undial_g*`` label present (the declared soft labels first)."""
    prefix, suffix = "softlabel_kl_oracle_", "_forget_facts"
    recorded = [c[len(prefix):-len(suffix)] for c in final.columns if c.startswith(prefix) and c.endswith(suffix)]
    candidates = [method] if method != "undial" else \
        [label for label in (*labels, *recorded) if label.startswith("undial_g")]
    for label in candidates:
        column = f"softlabel_kl_oracle_{label}_forget_facts"
        if column in final and final[column].notna().any():
            return column
    return None


def _headers(*names: str, width: int = 9) -> list[str]:
    """Column headers: the names without the words they all share at the start and the end
    (``a_x_y`` and ``b_x_y`` → ``a``, ``b``), cut to ``width``."""
    words = [name.split("_") for name in names]
    start = 0
    while all(len(w) > start + 1 for w in words) and len({w[start] for w in words}) == 1:
        start += 1
    end = 0
    while all(len(w) > start + end + 1 for w in words) and len({w[-1 - end] for w in words}) == 1:
        end += 1
    short = ["_".join(w[start:len(w) - end]) for w in words]
    if start and min(map(len, short)) < 3:  # too short to read: keep the last shared leading word
        short = ["_".join(w[start - 1:len(w) - end]) for w in words]
    return [s if len(s) <= width else s[: width - 1] + "…" for s in short]


def _cell(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
