"""Figures of one sweep (one facet combination of it), as ``matplotlib.figure.Figure`` objects (no
pyplot state). Which metrics to plot comes from the benchmark's declaration in the sweep's record
(``reports.results.declaration``): its fronts, its trajectories and its metrics of role ``kl``.

What the Unilogit paper (ACL 2025) plots besides its fronts (``reports.svg``, inline SVG): trajectories
over epochs, and the KL analysis — (a) KL between each distillation method's soft labels and the
oracle, (b) its progression over epochs, (c) KL between the unlearned model and the oracle with the
target as baseline. Every KL is shown in both directions, KL(oracle ‖ ·) and KL(· ‖ oracle), on each
token set recorded (``forget``: all forget tokens; ``forget_facts``: those the oracle does not
predict; ``retain``). KL metrics are found by role and read with the naming convention
``[softlabel_]kl_<a>_<b>_<tokens>`` = KL(p_a ‖ p_b) over ``<tokens>``. Epoch 0 is the target before
unlearning.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.pareto import configurations
from reports.record import OK
from reports.results import declaration, facet_columns, facet_label
from reports.results import scale as _scale

TOKEN_SETS = ("forget", "forget_facts", "retain")  # the naming convention's token sets, in panel order
_KL = re.compile(r"^(?P<softlabel>softlabel_)?kl_(?P<pair>.+)_(?P<tokens>" + "|".join(
    sorted(TOKEN_SETS, key=len, reverse=True)) + r")$")


def ok_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of finished trials (the ones whose unlearned model exists)."""
    return df[(df["role"] == "trial") & (df["status"] == OK)]


def reference_row(df: pd.DataFrame, role: str) -> pd.Series | None:
    """The ``target`` or ``oracle`` row of a sweep (of one facet combination), if recorded; with
    several unlearning targets (``average_over``, e.g. subjects) the mean of their rows, as the trials are averaged
    over them."""
    rows = df[df["role"] == role]
    if len(rows) <= 1:
        return rows.iloc[0] if len(rows) else None
    row = rows.iloc[0].copy()
    numeric = rows.select_dtypes("number").columns
    row[numeric] = rows[numeric].mean()
    return row


def parse_kl(metric: str) -> dict | None:
    """``[softlabel_]kl_<a>_<b>_<tokens>`` → ``{"metric", "softlabel", "a", "b", "tokens"}``, where one
    of ``a``, ``b`` is ``oracle`` or ``model``; ``None`` for a name that does not follow it."""
    match = _KL.match(metric)
    if not match:
        return None
    pair = match.group("pair")
    for known in ("oracle", "model"):
        if pair.startswith(f"{known}_"):
            a, b = known, pair[len(known) + 1:]
            break
        if pair.endswith(f"_{known}"):
            a, b = pair[: -len(known) - 1], known
            break
    else:
        return None
    if not a or not b:
        return None
    return {"metric": metric, "softlabel": bool(match.group("softlabel")), "a": a, "b": b,
            "tokens": match.group("tokens")}


def kl_metrics(df: pd.DataFrame) -> list[dict]:
    """The declared metrics of role ``kl`` that are columns of ``df``, parsed by ``parse_kl``, in
    declaration order."""
    declared = declaration(df)["metrics"]
    parsed = [parse_kl(name) for name, spec in declared.items() if spec.get("role") == "kl" and name in df]
    return [p for p in parsed if p]


def softlabels(df: pd.DataFrame) -> list[str]:
    """Soft-label names with a declared KL to the oracle in ``df`` (``unilogit``, ``undial_g10`` …)."""
    out = []
    for kl in kl_metrics(df):
        label = kl["b"] if kl["a"] == "oracle" else kl["a"] if kl["b"] == "oracle" else None
        if kl["softlabel"] and label and label not in out:
            out.append(label)
    return out


def model_kl_metrics(df: pd.DataFrame) -> list[str]:
    """The declared KL metrics between the unlearned model and the oracle present in ``df``."""
    return [kl["metric"] for kl in kl_metrics(df) if not kl["softlabel"] and {kl["a"], kl["b"]} == {"oracle", "model"}]


def trajectory_figure(df: pd.DataFrame, metrics=None) -> Figure:
    """Each method's configurations over epochs (one column per method, one row per metric; by
    default the benchmark's declared trajectories)."""
    title = problem(df)
    metrics = declaration(df)["trajectories"] if metrics is None else metrics
    metrics = [m for m in metrics if m in df]
    points = configurations(ok_trials(df))
    methods = sorted(points["method"].unique()) or ["(no finished trial)"]
    fig = Figure(figsize=(3.6 * len(methods) + 1, 2.6 * max(1, len(metrics)) + 0.4), layout="constrained")
    fig.suptitle(_text(title), fontsize=10)
    axes = fig.subplots(max(1, len(metrics)), len(methods), squeeze=False, sharex=True)
    target, oracle = reference_row(df, "target"), reference_row(df, "oracle")
    for col, method in enumerate(methods):
        group = points[points["method"] == method]
        labels = _config_labels(group, df.attrs.get("hyperparameters", []))
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            for k, (label, config) in enumerate(group.groupby(labels, sort=True)):
                _line(ax, config, metric, target, color=_color(k), label=_text(label))
            if oracle is not None and pd.notna(oracle.get(metric)):
                ax.axhline(oracle[metric], color="green", linestyle="--", linewidth=1, label="oracle")
            ax.set_title(_text(f"{method}: {with_scale(df, metric)}"), fontsize=8)
            ax.grid(alpha=0.3)
        axes[-1, col].set_xlabel("epoch (0 = target)")
        axes[-1, col].xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend(axes[0, col], 7)
    if not metrics:
        axes[0, 0].text(0.5, 0.5, "no trajectory metric declared or recorded", ha="center",
                        transform=axes[0, 0].transAxes)
    return fig


def softlabel_kl_figure(df: pd.DataFrame) -> Figure:
    """(a) Mean KL between each soft label and the oracle: at the start (built from the target) and,
    for a label built from the model being unlearned (Unilogit), over its finished trials' epochs."""
    title = problem(df)
    lookup = _kl_lookup(df, softlabel=True)
    tokens_sets = _token_sets(lookup)
    fig = Figure(figsize=(5.5 * max(1, len(tokens_sets)), 4.4), layout="constrained")
    fig.suptitle(_text(title), fontsize=10)
    axes = fig.subplots(1, max(1, len(tokens_sets)), squeeze=False)[0]
    target, trials = reference_row(df, "target"), ok_trials(df)
    for ax, tokens in zip(axes, tokens_sets or [None]):
        names, bars = [], []
        for label in softlabels(df) if tokens else []:
            columns = [lookup.get(("oracle", label, tokens)), lookup.get((label, "oracle", tokens))]
            if not any(columns):
                continue
            if target is not None:
                names.append(f"{_pretty(label)}\nat start")
                bars.append([(target.get(c, np.nan), target.get(f"{c}_stderr", np.nan)) if c else (np.nan, np.nan)
                             for c in columns])
            own = trials[trials["method"] == label]
            if len(own):
                names.append(f"{_pretty(label)}\nduring training")
                bars.append([(own[c].mean(), own[c].std()) if c and c in own else (np.nan, np.nan) for c in columns])
        values = np.array(bars, dtype=float).reshape(len(bars), 2, 2)
        where = np.arange(len(bars))
        for j, direction in enumerate(("KL(oracle ‖ label)", "KL(label ‖ oracle)")):
            ax.bar(where + (j - 0.5) * 0.4, values[:, j, 0], 0.4, yerr=values[:, j, 1], capsize=2,
                   color=_color(j), label=direction)
        ax.set_xticks(where, [_text(n) for n in names], fontsize=8)
        ax.set_title(f"soft label vs oracle, tokens: {tokens or '-'}", fontsize=10)
        ax.set_ylabel("mean KL (nats)")
        ax.grid(axis="y", alpha=0.3)
        _legend(ax, 8)
        if not names:
            ax.text(0.5, 0.5, "no soft-label KL recorded", ha="center", transform=ax.transAxes)
    return fig


def softlabel_kl_progress_figure(df: pd.DataFrame) -> Figure:
    """(b) Soft-label KL to the oracle over epochs: per configuration of the method that builds its
    labels from the model being unlearned (Unilogit); labels built once from the target (UnDIAL, per γ:
    every trial records the target's value) as constant lines."""
    title = problem(df)
    lookup = _kl_lookup(df, softlabel=True)
    target, points = reference_row(df, "target"), configurations(ok_trials(df))
    fig, axes = _kl_grid("soft label", _token_sets(lookup), title)
    for (row, col), ax in np.ndenumerate(axes):
        tokens = _token_sets(lookup)[col] if _token_sets(lookup) else None
        k = 0
        for label in softlabels(df) if tokens else []:
            metric = lookup.get(("oracle", label, tokens) if row == 0 else (label, "oracle", tokens))
            if metric is None:
                continue
            own = points[points["method"] == label]
            if len(own):
                labels = _config_labels(own, df.attrs.get("hyperparameters", []))
                for config_label, config in own.groupby(labels, sort=True):
                    _line(ax, config, metric, target, color=_color(k), label=_text(f"{_pretty(label)} {config_label}"))
                    k += 1
            elif _fixed(df, metric, target):
                ax.axhline(target[metric], color=_color(k), linestyle="--", linewidth=1.2,
                           label=_text(f"{_pretty(label)} (fixed)"))
                k += 1
        if not k:
            ax.text(0.5, 0.5, "no soft-label KL recorded", ha="center", transform=ax.transAxes)
        _legend(ax, 6)
    return fig


def model_kl_figure(df: pd.DataFrame) -> Figure:
    """(c) KL between the unlearned model and the oracle over epochs, every configuration coloured
    by method; the target (before unlearning) as the dashed baseline."""
    title = problem(df)
    lookup = _kl_lookup(df, softlabel=False)
    lookup = {key: metric for key, metric in lookup.items() if {key[0], key[1]} == {"oracle", "model"}}
    tokens_sets = _token_sets(lookup)
    target, points = reference_row(df, "target"), configurations(ok_trials(df))
    fig, axes = _kl_grid("model", tokens_sets, title)
    for (row, col), ax in np.ndenumerate(axes):
        pair = ("oracle", "model") if row == 0 else ("model", "oracle")
        metric = lookup.get((*pair, tokens_sets[col])) if tokens_sets else None
        if metric is None:
            ax.text(0.5, 0.5, "no model KL recorded", ha="center", transform=ax.transAxes)
            continue
        for k, (method, group) in enumerate(points.groupby("method", sort=True)):
            labels = _config_labels(group, df.attrs.get("hyperparameters", []))
            for n, (_, config) in enumerate(group.groupby(labels, sort=True)):
                _line(ax, config, metric, target, color=_color(k), label=_text(method) if n == 0 else None)
        if target is not None and pd.notna(target.get(metric)):
            ax.axhline(target[metric], color="black", linestyle="--", linewidth=1, label="target (baseline)")
        _legend(ax, 7)
    return fig


def _kl_lookup(df: pd.DataFrame, softlabel: bool) -> dict:
    """(a, b, tokens) → the declared KL metric of that kind present in ``df``."""
    return {(kl["a"], kl["b"], kl["tokens"]): kl["metric"] for kl in kl_metrics(df) if kl["softlabel"] == softlabel}


def _token_sets(lookup: dict) -> list[str]:
    present = {tokens for _, _, tokens in lookup}
    return [t for t in TOKEN_SETS if t in present]


def _fixed(df: pd.DataFrame, metric: str, target) -> bool:
    values = df.loc[df["role"] == "trial", metric].dropna() if metric in df else pd.Series(dtype=float)
    return target is not None and pd.notna(target.get(metric)) and len(values) > 0 \
        and bool(np.allclose(values, target[metric]))


def _kl_grid(what: str, tokens_sets: list[str], title: str):
    fig = Figure(figsize=(5.5 * max(1, len(tokens_sets)), 7.3), layout="constrained")
    fig.suptitle(_text(title), fontsize=10)
    axes = fig.subplots(2, max(1, len(tokens_sets)), squeeze=False, sharex=True)
    for (row, col), ax in np.ndenumerate(axes):
        direction = f"KL(oracle ‖ {what})" if row == 0 else f"KL({what} ‖ oracle)"
        ax.set_title(f"{direction}, tokens: {tokens_sets[col] if tokens_sets else '-'}", fontsize=10)
        ax.set_ylabel("mean KL (nats)")
        ax.grid(alpha=0.3)
        if row == 1:
            ax.set_xlabel("epoch (0 = target)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, axes


def _line(ax, config: pd.DataFrame, metric: str, target, color, label) -> None:
    """One configuration over epochs, from the target's value at epoch 0; a band of ±std over seeds."""
    if metric not in config:
        return
    config = config.dropna(subset=[metric]).sort_values("epoch")
    epochs, values = config["epoch"].to_numpy(float), config[metric].to_numpy(float)
    spread = config.get(f"{metric}_std", pd.Series(np.nan, index=config.index)).to_numpy(float)
    if target is not None and pd.notna(target.get(metric)):
        epochs, values, spread = np.r_[0.0, epochs], np.r_[target[metric], values], np.r_[np.nan, spread]
    if not len(values):
        return
    ax.plot(epochs, values, marker="o", markersize=3, color=color, linewidth=1.2, label=label)
    if np.isfinite(spread).any():
        ax.fill_between(epochs, values - spread, values + spread, color=color, alpha=0.15, linewidth=0)




def _config_labels(points: pd.DataFrame, hyperparameters: list[str]) -> pd.Series:
    """``lr=0.001, gamma=10`` from the hyper-parameters (but the seed) that vary within ``points``."""
    varying = [h for h in hyperparameters if h != "seed" and h in points
               and points[h].astype(str).nunique(dropna=False) > 1]
    if not varying:
        return pd.Series("all", index=points.index)
    return points[varying].apply(lambda r: ", ".join(f"{h}={_short(v)}" for h, v in r.items()), axis=1)


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)




def with_scale(df: pd.DataFrame, metric: str) -> str:
    """The metric's name, with ``×100`` when the benchmark declares it on a paper's ×100 scale."""
    value = _scale(df, metric)
    return f"{metric} (×{_short(value)})" if value not in (None, 1) else metric






def _pretty(label: str) -> str:
    """``undial_g10`` → ``undial γ=10``."""
    return re.sub(r"_g(\d+(?:\.\d+)?)$", r" γ=\1", label)


def _text(text: str) -> str:
    """Data-derived text shown literally (a ``$`` would otherwise start matplotlib mathtext)."""
    return str(text).replace("$", r"\$")


def _legend(ax, size: int) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=size)


def _color(k: int) -> str:
    return f"C{k % 10}"


def problem(df: pd.DataFrame) -> str:
    """``sweep`` or ``sweep, facet=value``: a figure shows one sweep and one facet combination."""
    if df["sweep"].nunique() != 1:
        raise ValueError(f"figures show one sweep; got {df['sweep'].nunique()} (select one: df[df.sweep == name])")
    values = {}
    for column in facet_columns(df):
        seen = df[column].dropna().unique()
        if len(seen) > 1:
            raise ValueError(f"figures show one facet combination; {column} takes {len(seen)} values here "
                             "(split the sweep with reports.results.facet_groups)")
        if len(seen):
            values[column] = seen[0]
    label = facet_label(values)
    return f"{df['sweep'].iloc[0]}, {label}" if label else str(df["sweep"].iloc[0])
