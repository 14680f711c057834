"""One self-contained HTML report: summary, figures (PNG data URIs), sortable tables, failed trials,
and each sweep's spec and environment record. Nothing is fetched; every string that comes from a
user or a file is HTML-escaped, and a Content-Security-Policy lets only the report's own script run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import numbers
import time
from pathlib import Path

import numpy as np
import pandas as pd

from reports import claims, figures, relearn, summary, svg, uncertainty
from reports.record import ENVIRONMENT, OK, PROPOSED_BY, SPEC
from reports.results import declaration, directions, facet_groups, facet_label, load, metrics

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1250px; padding: 0 16px; color: #222; }
h1 { font-size: 24px; } h2 { border-bottom: 2px solid #ccc; margin-top: 40px; } h3 { margin-top: 28px; }
h4 { margin: 20px 0 6px; } h5 { margin: 14px 0 4px; font-size: 13px; }
.scroll { overflow-x: auto; max-height: 640px; overflow-y: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; position: sticky; top: 0; white-space: normal; min-width: 40px; vertical-align: bottom; }
table.sortable th { cursor: pointer; } th[aria-sort=ascending]::after { content: " ▲"; }
th[aria-sort=descending]::after { content: " ▼"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.error td, tr.diverged td { background: #fdecea; } tr.running td, tr.pending td { background: #fff6e0; }
figure { margin: 18px 0; } figure img { max-width: 100%; border: 1px solid #eee; }
.fronts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 0 16px; }
figcaption { color: #555; font-size: 13px; } .note { color: #555; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
"""
_SCRIPT = """
(function () {
  function key(row, i) {
    var cell = row.cells[i];
    var v = cell ? cell.getAttribute("data-v") : null;
    return v !== null ? parseFloat(v) : (cell ? cell.textContent : "");
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    if (typeof a === "number") { return -1; }
    if (typeof b === "number") { return 1; }
    return String(a).localeCompare(String(b));
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function () {
      var table = th.closest("table"), body = table.tBodies[0], i = th.cellIndex;
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      Array.prototype.slice.call(body.rows)
        .sort(function (a, b) { return compare(key(a, i), key(b, i)) * (ascending ? 1 : -1); })
        .forEach(function (row) { body.appendChild(row); });
    });
  });
  document.body.setAttribute("data-sortable", "ready");
})();
"""
_CAPTIONS = {
    "front": "Each point: one configuration × epoch, seeds averaged; hover it for its configuration and its values "
             "with their 95 % intervals. Error bars: the 95 % interval of a paired bootstrap over the probes (and "
             "the seeds when there are several); ± 1.96 standard errors for a metric recorded without per-probe "
             "scores. Step lines: each method's Pareto front. ★ target before unlearning, ✚ oracle (retrained "
             "without the forget set). Failed trials are not plotted; a row of the trials table links to its point.",
    "trajectory": "Seed means over epochs (epoch 0 = the target); bands: ±std over seeds; dashed: the oracle.",
    "kl_a": "(a) KL between each distillation method's soft labels and the oracle's outputs, both directions. "
            "UnDIAL's labels are built from the target (fixed per γ); Unilogit's from the model being unlearned, "
            "shown at the start and as mean ± std over its finished trials' epochs. One panel per token set recorded: "
            "forget (all forget tokens), forget_facts (those the oracle does not predict, p_oracle(y) < 0.05), "
            "retain.",
    "kl_b": "(b) The same KL over epochs, per Unilogit configuration (seed means); UnDIAL's fixed labels as dashed "
            "lines.",
    "kl_c": "(c) KL between the unlearned model and the oracle over epochs, every configuration coloured by method; "
            "dashed: the target before unlearning (baseline).",
}


def render(data, output: str | Path | None = None) -> str:
    """The report of ``data`` (a DataFrame from ``reports.load`` or the paths to load) as HTML text;
    written to ``output`` when given."""
    df = data if isinstance(data, pd.DataFrame) else load(data)
    names = sorted(df["sweep"].dropna().unique())
    body = [f"<h1>Unlearning sweep report</h1><p class=note>Generated {_e(time.strftime('%Y-%m-%d %H:%M:%S'))} "
            f"from {len(names)} sweep(s). Forget-set text and model generations are not shown.</p>"]
    body.append("<nav><ul>" + "".join(f"<li><a href='#sweep-{i}'>{_e(n)}</a></li>" for i, n in enumerate(names))
                + "</ul></nav>")
    body += [_sweep_section(i, df[df["sweep"] == name], df.attrs.get("sweeps", {}).get(name, {}))
             for i, name in enumerate(names)]
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    page = ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; img-src data:; "
            f"style-src 'unsafe-inline'; script-src 'sha256-{digest}'\">"
            f"<title>Unlearning report: {_e(', '.join(map(str, names)))}</title><style>{_STYLE}</style></head>"
            f"<body>{''.join(body)}<script>{_SCRIPT}</script></body></html>\n")
    if output is not None:
        Path(output).write_text(page, encoding="utf-8")
    return page


def _sweep_section(index: int, df: pd.DataFrame, record: dict) -> str:
    name = df["sweep"].iloc[0]
    declared = declaration(df, name)
    trials = _last_rows(df[df["role"] == "trial"])
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    labels = [c for c in (*declared["facets"], *declared["average_over"]) if c in df]
    about = (f"Benchmark {declared['name']}" if declared["name"] else "") + (
        f", protocol {declared['protocol']}" if declared["protocol"] else "") + (
        f"; facets (separate problems): {', '.join(declared['facets'])}" if declared["facets"] else "")
    parts = [f"<section id='sweep-{index}'><h2>Sweep {_e(name)}</h2>",
             f"<p>{_e(record.get('path', ''))} — {len(trials)} trial(s): "
             + (_e(", ".join(f"{n} {s}" for s, n in sorted(counts.items()))) or "none") + "</p>",
             f"<p class=note>{_e(about)}</p>" if about else "", _proposers(trials),
             "<h3>Summary</h3>", _summary(df, declared), _claims(df), _relearning(df), "<h3>Reference models</h3>",
             _references(df, labels),
             "<h3>Figures</h3>", _figures(df, declared), "<h3>All trials</h3>",
             "<p class=note>One row per trial: its last evaluated epoch (the final one for finished trials). "
             "Click a header to sort; hover a value for its standard error; ◉ shows the trial's point on the first "
             "front.</p>",
             _table(_with_points(trials, df), ["point", *_trial_columns(df, trials)], sortable=True),
             "<h3>Failed trials</h3>", _failed(trials), "<h3>Spec and environment</h3>",
             _details(SPEC, record.get("spec") or f"(no {SPEC} recorded)"),
             _details(ENVIRONMENT, json.dumps(record["environment"], indent=2) if record.get("environment")
                      else f"(no {ENVIRONMENT} recorded)"),
             "</section>"]
    return "".join(parts)


def _proposers(trials: pd.DataFrame) -> str:
    """Who proposed the trials (the ``proposed_by`` column of the trials table), counted."""
    if PROPOSED_BY not in trials or not trials[PROPOSED_BY].notna().any():
        return ""
    counts = trials[PROPOSED_BY].dropna().astype(str).value_counts().sort_index()
    return (f"<p class=proposers>Configurations proposed by: {_e(', '.join(f'{k} {n}' for k, n in counts.items()))}"
            " (the proposed_by column; “(startup)”: the searcher's random first trials).</p>")


def _summary_metrics(df: pd.DataFrame, declared: dict) -> list[str]:
    """The selection's forget and retain metrics, its floor metrics, then the privacy metrics."""
    selection = declared.get("selection") or {}
    names = [selection.get("forget"), selection.get("retain"), *selection.get("floors", {})]
    names += [m for m, spec in declared["metrics"].items() if spec.get("role") == "privacy"]
    out = []
    for name in names:
        if name and name in df and name not in out:
            out.append(name)
    return out


def _summary(df: pd.DataFrame, declared: dict) -> str:
    columns = _summary_metrics(df, declared)
    picks = summary.select(df)
    pairs = summary.front_pairs(df)
    volumes = [uncertainty.hypervolume_intervals(df, x, y) for x, y in pairs]
    versus = [uncertainty.compare(df, x, y) for x, y in pairs]
    selection = declared.get("selection") or {}
    chosen = [m for m in (selection.get("forget"), selection.get("retain")) if m and m in df]
    selected = uncertainty.compare_selected(df, picks, chosen) if chosen and len(picks) else pd.DataFrame()
    parts = [f"<p>{_e(summary.rule(declared))}</p><p>Hypervolume of each method's front (every finished "
             "configuration × epoch, seeds averaged) up to one reference point per figure shared by all methods: the "
             "worst value of each metric over the finished trials, the target and the oracle. Higher is better. "
             f"Brackets: 95 % intervals of a paired bootstrap over the probes ({_RESAMPLES} resamples; the seeds "
             "resampled too when there are several). A verdict is stated only where the interval of a difference "
             f"excludes zero; otherwise it reads “{uncertainty.INDISTINGUISHABLE}”.</p>"]
    for values, group in facet_groups(df):
        label = facet_label(values)
        if label:
            parts.append(f"<h4>{_e(label)}</h4>")
        rows = []
        mine = picks[picks["facet"] == label] if len(picks) else picks
        for _, pick in mine.iterrows():
            trials = _last_rows(group[(group["role"] == "trial") & (group["method"] == pick["method"])])
            hps = [h for h in df.attrs.get("hyperparameters", []) if h != "seed" and h not in values
                   and h in pick and pd.notna(pick[h])]
            config = pick["note"] or (", ".join(f"{h}={_fmt(pick[h])}" for h in hps)
                                      + f" (epoch {_fmt(pick['epoch'])}; trials {pick['trials']})")
            rows.append([pick["method"], f"{(trials['status'] == OK).sum()} / {len(trials)}", config,
                         pick.get("n_seeds", math.nan), *[pick.get(m, math.nan) for m in columns]])
        parts.append(_grid(["method", "finished / all trials", "selected configuration", "seeds", *columns], rows)
                     if rows else "<p class=note>No trial.</p>")
        parts.append(_versus(_facet(selected, label), "Selected configurations compared", "metric"))
        own = [_facet(v, label) for v in volumes]
        own = [(pair, v) for pair, v in zip(pairs, own) if len(v)]
        if not own:
            parts.append("<p class=note>No declared front with both metrics recorded to compute a hypervolume on.</p>")
            continue
        methods = sorted({m for _, v in own for m in v["method"]})
        rows = [[method, *[_interval(v[v["method"] == method], "hypervolume") for _, v in own]] for method in methods]
        rows.append(["reference point (x, y)",
                     *[f"({_fmt(v['reference'].iloc[0][0])}, {_fmt(v['reference'].iloc[0][1])})" for _, v in own]])
        parts.append(_grid(["method", *[f"hypervolume: {y} vs {x}" for (x, y), _ in own]], rows))
        for (x, y), table in zip(pairs, versus):
            parts.append(_versus(_facet(table, label), f"Fronts compared: hypervolume of {y} vs {x}", None))
    return "".join(parts)


def _claims(df: pd.DataFrame) -> str:
    """The seed paper's claims checked on this sweep (``reports.claims``), when it ran Unilogit and a rival."""
    table = claims.check(df)
    if table.empty:
        return ""
    rows = [[row["claim"], row["comparison"], _interval(row, "difference"), row["verdict"]]
            for _, row in table.iterrows()]
    return ("<h3>Did the seed paper's claims hold?</h3><p class=note>Unilogit (ACL 2025) claims a better "
            "forget-vs-retain front than NPO and UnDIAL, soft labels closer to the oracle than UnDIAL's, and "
            "unlearned models closer to the oracle. Each row is computed from this sweep's results; a claim "
            "holds or fails here only where the "
            "95 % interval of the difference excludes zero.</p>"
            + _grid(["claim", "comparison", "difference [95 % interval]", "verdict"], rows, sortable=False))


def _relearning(df: pd.DataFrame) -> str:
    """The forget metrics before and after relearning (``reports.relearn``), when the sweep relearned."""
    table = relearn.table(df)
    if table.empty:
        return ""
    sweep = df["sweep"].iloc[0]
    names = relearn.relearned_metrics(df, sweep)
    done = {k: _e(_fmt(v)) for k, v in relearn.settings(df, sweep).items()}
    held = done.get("relearn_heldout_groups", "0")
    scored = (f"on the forget probes of the {held} group(s) none of those examples is about" if held != "0"
              else "on every forget probe (the whole forget set was relearned)")
    parts = ["<h3>Robustness to relearning</h3>",
             f"<p class=note>After its final epoch, each trial's model was fine-tuned (NLL) on "
             f"{done.get('relearn_examples', '?')} forget example(s) for {done.get('relearn_steps', '?')} step(s) at "
             f"learning rate {done.get('relearn_lr', '?')}, and the target the same way (the baseline: what "
             f"relearning brings back by itself). Values before and after relearning, {scored}; the target's "
             "“before” is the target before unlearning. A method robust to relearning stays near its value "
             "before. Hover a value for its standard error.</p>"]
    header = ["", "configuration", *[f"{m}: {when}" for m in names for when in ("before", "after relearning")]]
    for values, _ in facet_groups(df):
        label = facet_label(values)
        if label:
            parts.append(f"<h4>{_e(label)}</h4>")
        cells = [[row["who"], row["configuration"],
                  *[cell for m in names for cell in (row.get(m, math.nan),
                                                     (row.get(m + relearn.RELEARNED, math.nan),
                                                      row.get(m + relearn.RELEARNED + "_stderr")))]]
                 for _, row in table[table["facet"] == label].iterrows()]
        parts.append(_grid(header, cells, sortable=False))
    return "".join(parts)


_RESAMPLES = 1000  # uncertainty's default


def _facet(table: pd.DataFrame, label: str) -> pd.DataFrame:
    return table[table["facet"] == label] if len(table) and "facet" in table else table.iloc[:0]


def _versus(table: pd.DataFrame, title: str, by: str | None) -> str:
    """Pairwise differences (a − b) with their intervals, the share of resamples a is ahead, the verdict."""
    if table.empty:
        return ""
    rows = [[*([row[by]] if by else []), f"{row['a']} − {row['b']}", _interval(row, "difference"),
             row["share_a_ahead"], row["verdict"]] for _, row in table.iterrows()]
    header = [*([by] if by else []), "a − b", "difference [95 % interval]", "share of resamples a ahead", "verdict"]
    return f"<h5>{_e(title)}</h5>" + _grid(header, rows)


def _interval(row, name: str) -> tuple:
    """A table cell of ``name`` with its interval (``<name>_lo``, ``<name>_hi``) from a row or a one-row frame."""
    if isinstance(row, pd.DataFrame):
        if row.empty:
            return math.nan
        row = row.iloc[0]
    return Interval(row[name], row.get(f"{name}_lo", math.nan), row.get(f"{name}_hi", math.nan))


def _figures(df: pd.DataFrame, declared: dict) -> str:
    parts = []
    for values, group in facet_groups(df):
        label = facet_label(values)
        present = lambda m: bool(m) and m in group and group[m].notna().any()  # noqa: E731,B023
        fronts = [_front(group, f["x"], f["y"], f["size"] if present(f["size"]) else None, f"f{i}-" if i else "")
                  for i, f in enumerate(f for f in declared["fronts"] if present(f["x"]) and present(f["y"]))]
        made = []
        if any(present(m) for m in declared["trajectories"]):
            made.append((figures.trajectory_figure(group), "trajectory"))
        kls = [kl for kl in figures.kl_metrics(group) if present(kl["metric"])]
        if any(kl["softlabel"] for kl in kls) and figures.softlabels(group):
            made += [(figures.softlabel_kl_figure(group), "kl_a"),
                     (figures.softlabel_kl_progress_figure(group), "kl_b")]
        if any(not kl["softlabel"] and (kl["a"], kl["b"]) == ("oracle", "model") for kl in kls):
            made.append((figures.model_kl_figure(group), "kl_c"))
        if label:
            parts.append(f"<h4>{_e(label)}</h4>")
        if not fronts and not made:
            parts.append("<p class=note>No declared metric to plot.</p>")
            continue
        parts.append("<div class=fronts>" + "".join(fronts) + "</div>"
                     + "".join(_figure(fig, kind) for fig, kind in made))
    return "".join(parts)


def _front(group: pd.DataFrame, x: str, y: str, size: str | None, prefix: str) -> str:
    """One declared front as inline SVG: every finished configuration × epoch with its intervals."""
    wanted = [m for m in (x, y, size) if m]
    pool = pd.concat([figures.ok_trials(group), group[group["role"].isin(["target", "oracle"])]])
    table = uncertainty.intervals(pool, wanted)
    points = svg.label_points(table[table["role"] == "trial"], _point_keys(group))
    image = svg.front_svg(points, x, y, directions=directions(group), references=table[table["role"] != "trial"],
                          size=size, title=f"{figures.problem(group)}: {y} vs {x}",
                          labels={m: figures.with_scale(group, m) for m in wanted}, id_prefix=prefix)
    caption = _CAPTIONS["front"] + (f" Marker area grows with {size} (legend: its range)." if size else "")
    return svg.embed(image, caption)


def _references(df: pd.DataFrame, labels: list[str]) -> str:
    """The reference rows (the base model a target was prepared from, the target, the oracle), each
    value with its 95 % bootstrap interval where per-probe scores were recorded."""
    refs = df[df["role"].isin(REFERENCE_ROLES)]
    if refs.empty:
        return "<p class=note>None.</p>"
    names = [m for m in metrics(df) if m in refs and refs[m].notna().any()]
    table = uncertainty.intervals(refs, names)
    table = table.copy().assign(_order=table["role"].map(REFERENCE_ROLES.index)).sort_values("_order", kind="stable")
    shown = [c for c in labels if c in table]
    rows = [[row["role"], *[row[c] for c in shown],
             *[Interval(row[m], row.get(f"{m}_lo", math.nan), row.get(f"{m}_hi", math.nan)) for m in names]]
            for _, row in table.iterrows()]
    return ("<p class=note>base: the pretrained model the target was prepared from (its likelihoods and utility "
            "only). Brackets: 95 % bootstrap intervals over the probes.</p>"
            + _grid(["role", *shown, *names], rows, sortable=False))


REFERENCE_ROLES = ["base", "target", "oracle"]


def _with_points(trials: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """The trials with a ``point`` cell linking a finished one to its point on the first front."""
    keys = _point_keys(df)
    links = [Link("◉", "#" + svg.config_id(row, keys)) if row.get("status") == OK else ""
             for _, row in trials.iterrows()]
    return trials.assign(point=links) if len(trials) else trials.assign(point=pd.Series(dtype=object))


def _point_keys(df: pd.DataFrame) -> list[str]:
    """What tells a figure's points apart, besides sweep, method and epoch: hyper-parameters and facets."""
    facets = declaration(df, df["sweep"].iloc[0])["facets"] if len(df) else []
    return [h for h in (*df.attrs.get("hyperparameters", []), *facets) if h != "seed" and h in df]


def _figure(fig, kind: str, size: str | None = None) -> str:
    caption = _CAPTIONS[kind] + (f" Marker area grows with {size} (legend: its range)." if size else "")
    return (f"<figure><img alt='{_e(kind)} figure' src='{_png(fig)}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _failed(trials: pd.DataFrame) -> str:
    failed = trials[trials["status"] != OK]
    if failed.empty:
        return "<p class=note>None.</p>"
    columns = ["method", "trial", "status", *_hyperparameters(failed), "epoch", "error", "path"]
    return _table(failed, columns, sortable=True)


def _trial_columns(df: pd.DataFrame, trials: pd.DataFrame) -> list[str]:
    hps = _hyperparameters(trials)
    topology = [c for c in ("world_size", "zero_stage", "effective_batch", "wall_s") if c in trials and c not in hps]
    return ["method", "trial", "status", PROPOSED_BY, *hps, "epoch", *topology, *metrics(df), "error"]


def _hyperparameters(trials: pd.DataFrame) -> list[str]:
    """The hyper-parameters that these trials set (another sweep's leave theirs empty)."""
    return [h for h in trials.attrs.get("hyperparameters", []) if h in trials and trials[h].notna().any()]


def _table(rows: pd.DataFrame, columns: list[str], *, sortable: bool) -> str:
    columns = [c for c in columns if c in rows]
    cells = [[(row[c], row.get(f"{c}_stderr")) for c in columns] for _, row in rows.iterrows()]
    classes = [status if isinstance(status, str) else "" for status in rows.get("status", [None] * len(rows))]
    return _grid(columns, cells, classes, sortable=sortable) if cells else "<p class=note>None.</p>"


def _grid(header: list[str], rows: list[list], classes: list[str] | None = None, *, sortable: bool = True) -> str:
    """A table; a cell is a value or (value, standard error). Headers may wrap after underscores."""
    head = "".join(f"<th>{_e(h).replace('_', '_<wbr>')}</th>" for h in header)
    body = "".join(f"<tr class='{_e(cls)}'>" + "".join(_cell(*c) if type(c) is tuple else _cell(c) for c in row)
                   + "</tr>" for row, cls in zip(rows, classes or [""] * len(rows)))
    kind = " class=sortable" if sortable else ""
    return f"<div class=scroll><table{kind}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


class Link(tuple):
    """A table cell linking to an anchor of the page."""

    def __new__(cls, text, href):
        return super().__new__(cls, (text, href))


class Interval(tuple):
    """A value with its interval, shown as ``value [lo, hi]`` and sorted by the value."""

    def __new__(cls, value, lo, hi):
        return super().__new__(cls, (value, lo, hi))


def _cell(value, stderr=None) -> str:
    """A table cell; a number carries its raw value (``data-v``, for sorting) and its standard error."""
    if isinstance(value, Link):
        return f"<td><a href='{_e(value[1])}'>{_e(value[0])}</a></td>"
    if isinstance(value, Interval):
        number, lo, hi = (float(v) if isinstance(v, numbers.Real) else math.nan for v in value)
        if math.isnan(number):
            return "<td class=num></td>"
        ends = "" if math.isnan(lo) or math.isnan(hi) else f" [{_fmt(lo)}, {_fmt(hi)}]"
        return f"<td class=num data-v='{json.dumps(number)}'>{_e(_fmt(number) + ends)}</td>"
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        if math.isnan(value):
            return "<td class=num></td>"
        title = f" title='± {_fmt(float(stderr))}'" if isinstance(stderr, numbers.Real) and stderr == stderr else ""
        return f"<td class=num data-v='{json.dumps(float(value))}'{title}>{_e(_fmt(value))}</td>"
    return f"<td>{_e('' if pd.isna(value) else value)}</td>"


def _details(title: str, text: str) -> str:
    return f"<details><summary>{_e(title)}</summary><pre>{_e(text)}</pre></details>"


def _last_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Each trial's last evaluated row (its only row when it has no result)."""
    if trials.empty:
        return trials
    return trials.sort_values("epoch", na_position="first").groupby(["sweep", "trial"], sort=False).tail(1) \
        .sort_values(["method", "trial"])


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_, numbers.Integral)):
        value = float(value)
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _e(text) -> str:
    return html.escape(str(text), quote=True)
