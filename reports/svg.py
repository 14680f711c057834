"""Forget-vs-retain fronts as hand-written, inline SVG that a reader can inspect point by point.

Each configuration is one ``<circle>`` with an ``id`` (``point_id``) and a ``<title>`` (shown on hover: its
configuration and its values with their 95 % intervals), so that a table row can link to it
(``href="#<id>"``; the linked point is highlighted by ``:target``). Intervals are thin error bars, each
method's Pareto front (``reports.pareto``) a step line, reference rows (target, oracle) distinct markers.
No script; every text is escaped; the same input gives the same bytes.
"""

from __future__ import annotations

import hashlib
import html
import math
import numbers
import re
from typing import Mapping

import numpy as np
import pandas as pd

from reports.pareto import pareto_front, scores

Z95 = 1.959964  # a normal 95 % interval: value ± Z95 × standard error, where no interval columns are given
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
RADIUS = (3.0, 9.0)  # marker radius (px) of the smallest and the largest ``size`` value; the area grows linearly
_REFERENCES = {"target": ("star", "#000000", "target (before unlearning)"),
               "oracle": ("plus", "#2e7d32", "oracle (retrained)")}
_MARGIN = (64, 176, 34, 52)  # left, right (the legend), top, bottom
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_STYLE = ("svg.front circle.point:target{stroke:#000;stroke-width:2.5}"
          "svg.front circle.point:hover{stroke:#000;stroke-width:1.5}")


def point_id(*parts) -> str:
    """A stable, valid HTML id (``pt-`` + letters, digits, ``-``, ``_``) for the point identified by
    ``parts``; a hash of the parts keeps ids distinct where their readable form is not."""
    raw = "\x1f".join(_part(p) for p in parts)
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", raw).strip("-")[:40].strip("-")
    digest = hashlib.blake2s(raw.encode(), digest_size=4).hexdigest()
    return f"pt-{slug}-{digest}" if slug else f"pt-{digest}"


def config_id(row, keys) -> str:
    """The ``point_id`` of the configuration of ``row`` (a trial row or a ``configurations`` row):
    its sweep, method, the values of ``keys`` (the hyper-parameters that tell configurations apart)
    and its epoch. Table and figure agree when they pass the same ``keys``."""
    return point_id(row.get("sweep", ""), row.get("method", ""),
                    *(f"{k}={_part(row.get(k))}" for k in keys), f"epoch={_part(row.get('epoch'))}")


def label_points(configs: pd.DataFrame, hyperparameters=None) -> pd.DataFrame:
    """``configs`` (from ``reports.pareto.configurations``) with a ``label`` (method, hyper-parameters,
    epoch, seeds) and a ``point_id`` column. Hyper-parameters: ``configs.attrs["hyperparameters"]`` by
    default; only those that are columns of ``configs`` (not the seed nor averaged-over ones) count."""
    names = configs.attrs.get("hyperparameters", []) if hyperparameters is None else hyperparameters
    keys = [h for h in names if h != "seed" and h in configs]
    out = configs.copy()
    out["point_id"] = [config_id(row, keys) for _, row in configs.iterrows()]
    out["label"] = [_config_text(row, keys) for _, row in configs.iterrows()]
    return out


def front_svg(points: pd.DataFrame, x: str, y: str, *, directions: Mapping, references: pd.DataFrame | None = None,
              size: str | None = None, title: str | None = None, labels: Mapping[str, str] | None = None,
              id_prefix: str = "", width: int = 640, height: int = 440) -> str:
    """``y`` against ``x`` of one row per configuration of ``points`` (columns ``method``, ``x``, ``y``,
    ``label``, ``point_id``; intervals from ``<m>_lo``/``<m>_hi``, else ± Z95 × ``<m>_stderr``), each
    method's front by ``directions`` ({metric: "min" | "max" | target}), ``references`` rows by their
    ``role``, marker area linear in ``size``. ``labels`` names the axes' metrics (default: the column);
    ``id_prefix`` keeps ids unique when the same points are drawn twice in one page. Rows with NaN in
    ``x`` or ``y`` are skipped."""
    title = title if title is not None else f"{y} vs {x}"
    points = _valid(points, x, y)
    refs = _valid(references if references is not None and "role" in references else None, x, y)
    if points.empty and refs.empty:
        return _svg(320, 60, title, [f'<text x="160" y="35" text-anchor="middle" font-size="13">'
                                     f'{_e(title)}: nothing to plot</text>'])
    left, right, top, bottom = _MARGIN
    box = (left, width - right, height - bottom, top)
    sx, xticks = _scale(*_bounds([points, refs], x), left, width - right)
    sy, yticks = _scale(*_bounds([points, refs], y), height - bottom, top)
    labels = {x: x, y: y, **(labels or {})}
    parts = [f'<text x="{(left + width - right) / 2:.2f}" y="20" text-anchor="middle" font-size="13">'
             f'{_e(title)}</text>', *_axes(sx, sy, xticks, yticks, box),
             *_axis_labels(_better(labels[x], directions.get(x)), _better(labels[y], directions.get(y)), box)]
    methods = sorted(points["method"].astype(str).unique())
    points = points.assign(_radius=_radii(points, size))
    for k, method in enumerate(methods):
        group, color = points[points["method"].astype(str) == method], PALETTE[k % len(PALETTE)]
        parts.append(_front(group, x, y, directions, sx, sy, color, id_prefix))
        parts += [_point(row, x, y, size, sx, sy, color, id_prefix) for _, row in group.iterrows()]
    parts += [_reference(row, x, y, sx, sy) for _, row in refs.iterrows()]
    parts += _legend(methods, refs, points, size, width - right + 12, top)
    return _svg(width, height, title, parts)


def curves_svg(curves: Mapping[str, list], *, x_label: str, y_label: str, title: str,
               hlines: Mapping[str, float] | None = None, width: int = 640, height: int = 400) -> str:
    """Line chart of ``curves`` ({label: [run, ...]}, a run being the values at x = 1, 2, …): each
    run a thin line, each label's mean over its runs (where every run has a value) a thick one;
    ``hlines`` ({label: y}) dashed horizontal lines. Every text is escaped; the same input gives
    the same bytes."""
    hlines = dict(hlines or {})
    runs = {label: [[_number(v) for v in run] for run in group] for label, group in curves.items()}
    values = [v for group in runs.values() for run in group for v in run if math.isfinite(v)] + list(hlines.values())
    length = max((len(run) for group in runs.values() for run in group), default=0)
    if not values or not length:
        return _svg(320, 60, title, [f'<text x="160" y="35" text-anchor="middle" font-size="13">'
                                     f'{_e(title)}: nothing to plot</text>'])
    left, right, top, bottom = _MARGIN
    box = (left, width - right, height - bottom, top)
    sx, xticks = _scale(1, max(length, 2), left, width - right)
    sy, yticks = _scale(min(0.0, min(values)), max(values), height - bottom, top)
    parts = [f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" font-size="13">{_e(title)}</text>',
             *_axes(sx, sy, xticks, yticks, box), *_axis_labels(x_label, y_label, box)]
    for label, y in hlines.items():
        parts.append(f'<line class="hline" x1="{left}" y1="{sy(y):.2f}" x2="{width - right}" y2="{sy(y):.2f}" '
                     f'stroke="#555" stroke-dasharray="5 4"/><text x="{left + 4}" y="{sy(y) - 4:.2f}" '
                     f'text-anchor="start">{_e(label)}</text>')
    legend = []
    for k, (label, group) in enumerate(runs.items()):
        color = PALETTE[k % len(PALETTE)]
        for run in group:
            parts.append(_polyline(run, sx, sy, color, 1.0, 0.45))
        common = min((len(run) for run in group), default=0)
        mean = [float(np.mean([run[i] for run in group])) for i in range(common)]
        parts.append(_polyline(mean, sx, sy, color, 2.5, 1.0))
        y = top + 14 + 18 * k
        legend.append(f'<line x1="{width - right + 12}" y1="{y - 4}" x2="{width - right + 32}" y2="{y - 4}" '
                      f'stroke="{color}" stroke-width="2.5"/><text x="{width - right + 38}" y="{y}">{_e(label)}</text>')
    note = top + 14 + 18 * len(runs)
    legend.append(f'<text x="{width - right + 12}" y="{note}" fill="#555">thin: each run; thick: mean</text>')
    return _svg(width, height, title, parts + legend)


def _polyline(values: list[float], sx, sy, color: str, stroke: float, opacity: float) -> str:
    points = " ".join(f"{sx(i + 1):.2f},{sy(v):.2f}" for i, v in enumerate(values) if math.isfinite(v))
    return (f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="{stroke}" '
            f'stroke-opacity="{opacity}"/>')


def embed(svg: str, caption: str = "") -> str:
    """The SVG inline in an HTML ``<figure>`` (not a data URI), with an escaped caption."""
    caption = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f"<figure class=svg>{svg}{caption}</figure>"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Ticks at the 1-2-5 step whose ticks cover [low, high] in the number of intervals nearest ``count``."""
    if high <= low:
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    magnitude = 10.0 ** math.floor(math.log10((high - low) / count))

    def ends(step: float) -> tuple[int, int]:
        return math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)

    step = min((m * magnitude for m in (1, 2, 5, 10)), key=lambda s: (abs(ends(s)[1] - ends(s)[0] - count), -s))
    first, last = ends(step)
    digits = max(0, -math.floor(math.log10(step))) + 1
    return [round(k * step, digits) + 0.0 for k in range(first, last + 1)]


def interval(row, metric: str) -> tuple[float, float] | None:
    """The 95 % interval of ``metric`` in ``row``: ``<m>_lo``/``<m>_hi``, else ± Z95 × ``<m>_stderr``."""
    lo, hi = _number(row.get(f"{metric}_lo")), _number(row.get(f"{metric}_hi"))
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi
    value, stderr = _number(row.get(metric)), _number(row.get(f"{metric}_stderr"))
    if math.isfinite(value) and math.isfinite(stderr):
        return value - Z95 * stderr, value + Z95 * stderr
    return None


def _valid(df: pd.DataFrame | None, x: str, y: str) -> pd.DataFrame:
    if df is None or x not in df or y not in df:
        return pd.DataFrame(columns=["method", x, y])
    values = df[[x, y]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    return df[np.isfinite(values).all(axis=1)]


def _bounds(frames: list[pd.DataFrame], metric: str) -> tuple[float, float]:
    """(low, high) of ``metric`` over the rows of ``frames``: their values and their intervals."""
    values = [v for rows in frames for _, row in rows.iterrows()
              for v in (_number(row[metric]), *(interval(row, metric) or ())) if math.isfinite(v)]
    return min(values), max(values)


def _scale(low: float, high: float, start: float, stop: float):
    ticks = nice_ticks(low, high)
    lo, hi = ticks[0], ticks[-1] if ticks[-1] > ticks[0] else ticks[0] + 1
    return (lambda v: start + (float(v) - lo) / (hi - lo) * (stop - start)), ticks


def _axes(sx, sy, xticks, yticks, box) -> list[str]:
    left, right, bottom, top = box
    out = [f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#888"/>']
    for tick, p in ((t, sx(t)) for t in xticks):
        out.append(f'<g class="tick-x"><line x1="{p:.2f}" y1="{top}" x2="{p:.2f}" y2="{bottom + 4}" stroke="#ddd"/>'
                   f'<text x="{p:.2f}" y="{bottom + 16}" text-anchor="middle">{_number_text(tick)}</text></g>')
    for tick, p in ((t, sy(t)) for t in yticks):
        out.append(f'<g class="tick-y"><line x1="{left - 4}" y1="{p:.2f}" x2="{right}" y2="{p:.2f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{p + 3:.2f}" text-anchor="end">{_number_text(tick)}</text></g>')
    return out


def _axis_labels(x_text: str, y_text: str, box) -> list[str]:
    left, right, bottom, top = box
    middle = (top + bottom) / 2
    return [f'<text class="label-x" x="{(left + right) / 2:.2f}" y="{bottom + 36}" text-anchor="middle" '
            f'font-size="12">{_e(x_text)}</text>', f'<text class="label-y" x="16" y="{middle:.2f}" '
            f'text-anchor="middle" font-size="12" transform="rotate(-90 16 {middle:.2f})">{_e(y_text)}</text>']


def _better(name: str, direction) -> str:
    """The axis label; the arrow points along the text, so up on the rotated y axis."""
    if direction == "min":
        return f"{name} (← lower is better)"
    if direction == "max":
        return f"{name} (higher is better →)"
    return f"{name} (best at {_fmt(direction)})" if direction is not None else name


def _front(group: pd.DataFrame, x: str, y: str, directions, sx, sy, color: str, prefix: str) -> str:
    """The method's front as a step line (horizontal, then vertical), its points in score order."""
    objectives = {x: directions[x], y: directions[y]}
    front = pareto_front(group, objectives)
    front = front.iloc[np.lexsort(scores(front, objectives).T[::-1])]
    xs, ys = front[x].to_numpy(float), front[y].to_numpy(float)
    corners = [c for i in range(len(xs)) for c in [(xs[i], ys[i - 1])] * (i > 0) + [(xs[i], ys[i])]]
    ids = " ".join(prefix + _id(row, i) for i, row in front.iterrows())
    coords = " ".join(f"{sx(a):.2f},{sy(b):.2f}" for a, b in corners)
    return (f'<polyline class="front" data-method="{_e(group["method"].iloc[0])}" data-points="{_e(ids)}" '
            f'points="{coords}" fill="none" stroke="{color}" stroke-width="1.8"/>')


def _point(row, x: str, y: str, size, sx, sy, color: str, prefix: str) -> str:
    """One configuration: its error bars and its circle, whose ``<title>`` tells its label and values."""
    cx, cy = sx(row[x]), sy(row[y])
    bars = ""
    if ends := interval(row, x):
        bars += _bar("x", sx(ends[0]), sx(ends[1]), cy, color)
    if ends := interval(row, y):
        bars += _bar("y", sy(ends[0]), sy(ends[1]), cx, color)
    label = row.get("label")
    label = label if isinstance(label, str) and label else str(row["method"])
    text = "\n".join([label, *(_value_line(row, m) for m in (x, y, size) if m)])
    return (f'<g class="config" data-method="{_e(row["method"])}">{bars}'
            f'<circle class="point" id="{_e(prefix + _id(row, row.name))}" cx="{cx:.2f}" cy="{cy:.2f}" '
            f'r="{row["_radius"]:.2f}" fill="{color}" fill-opacity="0.75" stroke="#333" stroke-width="0.4">'
            f'<title>{_e(text)}</title></circle></g>')


def _bar(axis: str, start: float, stop: float, at: float, color: str) -> str:
    """A thin error bar along ``axis`` from ``start`` to ``stop`` (px), at ``at`` on the other axis."""
    ends = (start, at, stop, at) if axis == "x" else (at, start, at, stop)
    xy = " ".join(f'{n}="{v:.2f}"' for n, v in zip(("x1", "y1", "x2", "y2"), ends))
    return f'<line class="err-{axis}" {xy} stroke="{color}" stroke-width="0.8" opacity="0.6"/>'


def _reference(row, x: str, y: str, sx, sy) -> str:
    role = str(row["role"])
    shape, color, name = _REFERENCES.get(role, ("diamond", "#555555", role))
    text = "\n".join([name, *(_value_line(row, m) for m in (x, y))])
    return (f'<path class="ref" data-role="{_e(role)}" d="{_marker(shape, sx(row[x]), sy(row[y]), 8)}" '
            f'fill="{color}" stroke="#fff" stroke-width="0.6"><title>{_e(text)}</title></path>')


def _marker(shape: str, cx: float, cy: float, r: float) -> str:
    """A closed path: a five-pointed star, a plus or a diamond of radius ``r`` around (cx, cy)."""
    w = r * 0.35
    offsets = {"star": [((r if k % 2 == 0 else r * 0.45) * math.cos(math.pi / 2 + k * math.pi / 5),
                         (r if k % 2 == 0 else r * 0.45) * math.sin(math.pi / 2 + k * math.pi / 5)) for k in range(10)],
               "plus": [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w), (-r, -w), (-r, w),
                        (-w, w), (-w, r)]}.get(shape, [(r, 0), (0, r), (-r, 0), (0, -r)])
    return "M" + " L".join(f"{cx + a:.2f},{cy - b:.2f}" for a, b in offsets) + " Z"


def _legend(methods, refs: pd.DataFrame, points: pd.DataFrame, size, left: float, top: float) -> list[str]:
    entries = [(f'<circle cx="{left + 6}" cy="{{y}}" r="4" fill="{PALETTE[k % len(PALETTE)]}"/>', m)
               for k, m in enumerate(methods)]
    for role in dict.fromkeys(refs["role"].astype(str)) if len(refs) else []:
        shape, color, name = _REFERENCES.get(role, ("diamond", "#555555", role))
        entries.append((f'<path d="{_marker(shape, left + 6, 0, 6)}" fill="{color}" transform="translate(0 {{y}})"/>',
                        name))
    if size and len(points) and size in points:
        values = pd.to_numeric(points[size], errors="coerce")
        entries += [("", f"marker area ∝ {size}:"), ("", f"{_fmt(values.min())} to {_fmt(values.max())}")]
    return ['<g class="legend">', *(marker.format(y=f"{top + 8 + 18 * i}") + f'<text x="{left + 16}" '
            f'y="{top + 12 + 18 * i}" font-size="11">{_e(text)}</text>' for i, (marker, text) in enumerate(entries)),
            "</g>"]


def _radii(points: pd.DataFrame, size) -> np.ndarray:
    """Marker radii: the area linear in ``size`` over ``points`` (NaN: the smallest), else one radius."""
    if not size or size not in points:
        return np.full(len(points), 4.5)
    values = pd.to_numeric(points[size], errors="coerce").to_numpy(float)
    low, high = np.nanmin(values, initial=np.inf), np.nanmax(values, initial=-np.inf)
    share = (values - low) / (high - low) if high > low else np.full(len(values), 0.5)
    return np.sqrt(RADIUS[0] ** 2 + np.nan_to_num(share) * (RADIUS[1] ** 2 - RADIUS[0] ** 2))


def _svg(width: int, height: int, label: str, parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="front" width="{width}" height="{height}" viewBox="0 0 '
            f'{width} {height}" role="img" aria-label="{_e(label)}" font-family="sans-serif" font-size="10">'
            f"<style>{_STYLE}</style>" + "".join(parts) + "</svg>")


def _value_line(row, metric: str) -> str:
    ends = interval(row, metric)
    return f"{metric} = {_fmt(row.get(metric))}" + (f" [{_fmt(ends[0])}, {_fmt(ends[1])}]" if ends else "")


def _config_text(row, keys) -> str:
    settings = ", ".join(f"{k}={_part(row.get(k))}" for k in keys)
    seeds = _number(row.get("n_seeds"))
    trials = f" (trials {row['trials']})" if isinstance(row.get("trials"), str) and row["trials"] else ""
    return (f"{row.get('method', '')}" + (f": {settings}" if settings else "") + f", epoch {_part(row.get('epoch'))}"
            + (f", {seeds:g} seed{'s' if seeds != 1 else ''}" if math.isfinite(seeds) else "") + trials)


def _id(row, index) -> str:
    value = row.get("point_id")
    return str(value) if isinstance(value, str) and value else point_id("point", index)


def _part(value) -> str:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, numbers.Real) and value != value):
        return ""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return _number_text(float(value))
    return str(value)


def _number_text(value: float) -> str:
    """Exact and short: ``3`` for 3.0, ``1e-05``, ``0.3`` (the shortest repr that reads back the same)."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value) -> str:
    value = _number(value)
    return "-" if not math.isfinite(value) else f"{value:.4g}"


def _e(text) -> str:
    """Escaped for XML text and attributes (characters XML forbids are dropped)."""
    return html.escape(_XML_INVALID.sub("", str(text)), quote=True)
