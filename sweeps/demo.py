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


def main(storage: str = "runs", quick: bool = False) -> Path:
    """The SmolLM2 demo (``specs/demo.yaml``), or with ``quick`` the tiny sweep, into
    ``<storage>/demo``; a sweep of the other kind already there is refused, not mixed."""
    import reports
    from reports import summary
    from sweeps import spec as specs
    from sweeps.run import run_sweep

    spec = dataclasses.replace(specs.load(SPECS / ("tiny.yaml" if quick else "demo.yaml")), name="demo",
                               storage=storage)
    sweep_dir = Path(storage).resolve() / "demo"
    run_sweep(spec, resume=(sweep_dir / "spec.yaml").is_file())
    df = reports.load([sweep_dir])
    report = sweep_dir / "report.html"
    reports.render(df, report)
    print_summary(df, summary)
    print(f"report: {report}")
    return report


def print_summary(df, summary) -> None:
    """Per method: the selected configuration's forget / retain recall, the hypervolume of the
    forget-vs-retain front, and Unilogit's / UnDIAL's soft-label KL to the oracle."""
    if "final" not in df or not df["final"].eq(True).any():
        failed = df[df["role"] == "trial"]
        print(f"no trial finished ({len(failed)} failed; their error.txt is beside each trial's results)")
        return
    picks = summary.select(df).set_index("method")
    volumes = summary.hypervolumes(df)
    volumes = volumes[volumes["x"] == summary.FORGET].set_index("method")["hypervolume"]
    final = df[(df["role"] == "trial") & df["final"].eq(True)]
    print(f"{'method':<10}{'forget QA':>10}{'retain QA':>10}{'hypervol.':>10}{'soft-label KL(oracle‖label), facts':>38}")
    for method in sorted(picks.index):
        pick = picks.loc[method]
        label = "softlabel_kl_oracle_unilogit_forget_facts" if method == "unilogit" else (
            "softlabel_kl_oracle_undial_g10_forget_facts" if method == "undial" else None)
        kl = final[final["method"] == method][label].mean() if label and label in final else math.nan
        cells = [pick.get(summary.FORGET, math.nan), pick.get(summary.RETAIN, math.nan), volumes.get(method, math.nan)]
        print(f"{method:<10}" + "".join(f"{_cell(v):>10}" for v in cells) + f"{_cell(kl):>38}")
    print("forget / retain QA: the configuration the report's rule selects ('-': none meets it)")


def _cell(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
