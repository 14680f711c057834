"""Figures of one sweep, as ``matplotlib.figure.Figure`` objects (no pyplot state).

What the Unilogit paper (ACL 2025) plots: forget vs retain scatter with one Pareto front per method
(each point a hyper-parameter setting × epoch, seeds averaged, error bars = std over seeds or the
evaluation's standard error for one seed), trajectories over epochs, and the KL analysis —
(a) KL between each distillation method's soft labels and the oracle, (b) its progression over
epochs, (c) KL between the unlearned model and the oracle with the target as baseline. Every KL is
shown in both directions, KL(oracle ‖ ·) and KL(· ‖ oracle), on all forget tokens (``forget``) and
on those the oracle does not predict (``forget_facts``). Epoch 0 is the target before unlearning.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.results import directions as _directions
from reports.pareto import configurations, pareto_front, scores

FRONT_PAIRS = (  # (x: forget, y: what should survive)
    ("forget_qa_rouge_l_recall", "retain_qa_rouge_l_recall"),
    ("forget_verbmem_rouge_l_f1", "utility_qa_rouge_l_recall"),
    ("forget_all_rouge_l_recall", "neighbor_qa_rouge_l_recall"),
    ("muse_knowmem_f", "muse_knowmem_r"),  # MUSE (the seed paper's MUSE figures)
    ("muse_verbmem_f", "muse_knowmem_r"),
    ("rwku_forget_all", "rwku_neighbor_all"),  # RWKU (forget vs neighbour, and vs MMLU)
    ("rwku_forget_all", "rwku_mmlu"),
    ("jsonl_forget_completion", "jsonl_neighbor_completion"),  # bring-your-own (the e-commerce shape)
)
TRAJECTORY_METRICS = ("forget_qa_rouge_l_recall", "retain_qa_rouge_l_recall", "utility_qa_rouge_l_recall")
TOKEN_SETS = ("forget", "forget_facts")
_SOFTLABEL = re.compile(r"^softlabel_kl_oracle_(?P<label>.+)_forget$")
_MARKERS = "osD^vP*Xh<>"


def ok_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of finished trials (the ones whose unlearned model exists)."""
    return df[(df["role"] == "trial") & (df["status"] == "ok")]


def reference_row(df: pd.DataFrame, role: str) -> pd.Series | None:
    """The ``target`` or ``oracle`` row of a sweep, if recorded; with several unlearning targets
    (RWKU subjects) the mean of their rows, as the trials are averaged over subjects."""
    rows = df[df["role"] == role]
    if len(rows) <= 1:
        return rows.iloc[0] if len(rows) else None
    row = rows.iloc[0].copy()
    numeric = rows.select_dtypes("number").columns
    row[numeric] = rows[numeric].mean()
    return row


def softlabels(df: pd.DataFrame) -> list[str]:
    """Soft-label names with a KL to the oracle in ``df`` (``unilogit``, ``undial_g10`` …)."""
    return [m.group("label") for m in map(_SOFTLABEL.match, df.columns) if m]


def pareto_figure(df: pd.DataFrame, x: str, y: str) -> Figure:
    """Forget metric ``x`` vs ``y`` of one sweep: every configuration × epoch, each method's front as
    a step line (the boundary of the region it dominates), the target and the oracle marked."""
    _one_sweep(df)
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    objectives = {x: _directions(df)[x], y: _directions(df)[y]}
    points = configurations(ok_trials(df)).dropna(subset=[x, y])
    for k, (method, group) in enumerate(points.groupby("method", sort=True)):
        color = _color(k)
        ax.errorbar(group[x], group[y], xerr=_spread(group, x), yerr=_spread(group, y), fmt=_MARKERS[k % len(_MARKERS)],
                    color=color, alpha=0.75, markersize=5, capsize=2, linewidth=0.8, label=_text(method))
        front = pareto_front(group, objectives)
        front = front.iloc[np.lexsort(scores(front, objectives).T[::-1])]
        ax.plot(front[x], front[y], drawstyle="steps-post", color=color, linewidth=1.8, label=_text(f"_front {method}"))
    _mark_references(ax, df, x, y)
    if not len(points):
        ax.text(0.5, 0.5, "no finished trial has both metrics", ha="center", transform=ax.transAxes)
    ax.set_xlabel(_axis_label(x, objectives[x]))
    ax.set_ylabel(_axis_label(y, objectives[y]))
    ax.set_title(_text(f"{df['sweep'].iloc[0]}: {y} vs {x}"), fontsize=10)
    ax.grid(alpha=0.3)
    _legend(ax, 8)
    return fig


def trajectory_figure(df: pd.DataFrame, metrics: tuple = TRAJECTORY_METRICS) -> Figure:
    """Each method's configurations over epochs (one column per method, one row per metric)."""
    _one_sweep(df)
    metrics = [m for m in metrics if m in df]
    points = configurations(ok_trials(df))
    methods = sorted(points["method"].unique()) or ["(no finished trial)"]
    fig = Figure(figsize=(3.6 * len(methods) + 1, 2.6 * max(1, len(metrics))), layout="constrained")
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
            ax.set_title(_text(f"{method}: {metric}"), fontsize=8)
            ax.grid(alpha=0.3)
        axes[-1, col].set_xlabel("epoch (0 = target)")
        axes[-1, col].xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend(axes[0, col], 7)
    return fig


def softlabel_kl_figure(df: pd.DataFrame) -> Figure:
    """(a) Mean KL between each soft label and the oracle: at the start (built from the target) and,
    for a label built from the model being unlearned (Unilogit), over its finished trials' epochs."""
    _one_sweep(df)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, len(TOKEN_SETS), squeeze=False)[0]
    target, trials = reference_row(df, "target"), ok_trials(df)
    for ax, tokens in zip(axes, TOKEN_SETS):
        names, bars = [], []
        for label in softlabels(df):
            columns = [f"softlabel_kl_oracle_{label}_{tokens}", f"softlabel_kl_{label}_oracle_{tokens}"]
            if target is not None:
                names.append(f"{_pretty(label)}\nat start")
                bars.append([(target.get(c, np.nan), target.get(f"{c}_stderr", np.nan)) for c in columns])
            own = trials[trials["method"] == label]
            if len(own):
                names.append(f"{_pretty(label)}\nduring training")
                bars.append([(own[c].mean(), own[c].std()) if c in own else (np.nan, np.nan) for c in columns])
        values = np.array(bars, dtype=float).reshape(len(bars), 2, 2)
        where = np.arange(len(bars))
        for j, direction in enumerate(("KL(oracle ‖ label)", "KL(label ‖ oracle)")):
            ax.bar(where + (j - 0.5) * 0.4, values[:, j, 0], 0.4, yerr=values[:, j, 1], capsize=2,
                   color=_color(j), label=direction)
        ax.set_xticks(where, [_text(n) for n in names], fontsize=8)
        ax.set_title(f"soft label vs oracle, tokens: {tokens}", fontsize=10)
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
    _one_sweep(df)
    target, points = reference_row(df, "target"), configurations(ok_trials(df))
    fig, axes = _kl_grid("soft label")
    for (row, col), ax in np.ndenumerate(axes):
        tokens = TOKEN_SETS[col]
        k = 0
        for label in softlabels(df):
            metric = _kl_name("softlabel_", label, row, tokens)
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
        _legend(ax, 6)
    return fig


def model_kl_figure(df: pd.DataFrame) -> Figure:
    """(c) KL between the unlearned model and the oracle over epochs, every configuration coloured
    by method; the target (before unlearning) as the dashed baseline."""
    _one_sweep(df)
    target, points = reference_row(df, "target"), configurations(ok_trials(df))
    fig, axes = _kl_grid("model")
    for (row, col), ax in np.ndenumerate(axes):
        metric = _kl_name("", "model", row, TOKEN_SETS[col])
        for k, (method, group) in enumerate(points.groupby("method", sort=True)):
            labels = _config_labels(group, df.attrs.get("hyperparameters", []))
            for n, (_, config) in enumerate(group.groupby(labels, sort=True)):
                _line(ax, config, metric, target, color=_color(k), label=_text(method) if n == 0 else None)
        if target is not None and pd.notna(target.get(metric)):
            ax.axhline(target[metric], color="black", linestyle="--", linewidth=1, label="target (baseline)")
        _legend(ax, 7)
    return fig


def _fixed(df: pd.DataFrame, metric: str, target) -> bool:
    values = df.loc[df["role"] == "trial", metric].dropna() if metric in df else pd.Series(dtype=float)
    return target is not None and pd.notna(target.get(metric)) and len(values) > 0 \
        and bool(np.allclose(values, target[metric]))


def _kl_grid(what: str):
    fig = Figure(figsize=(11, 7), layout="constrained")
    axes = fig.subplots(2, len(TOKEN_SETS), squeeze=False, sharex=True)
    for (row, col), ax in np.ndenumerate(axes):
        direction = f"KL(oracle ‖ {what})" if row == 0 else f"KL({what} ‖ oracle)"
        ax.set_title(f"{direction}, tokens: {TOKEN_SETS[col]}", fontsize=10)
        ax.set_ylabel("mean KL (nats)")
        ax.grid(alpha=0.3)
        if row == 1:
            ax.set_xlabel("epoch (0 = target)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, axes


def _kl_name(prefix: str, other: str, row: int, tokens: str) -> str:
    """Row 0: KL(oracle ‖ other), ``{prefix}kl_oracle_{other}_{tokens}``; row 1: the reverse."""
    return f"{prefix}kl_oracle_{other}_{tokens}" if row == 0 else f"{prefix}kl_{other}_oracle_{tokens}"


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


def _mark_references(ax, df: pd.DataFrame, x: str, y: str) -> None:
    for role, marker, color in (("target", "*", "black"), ("oracle", "P", "green")):
        row = reference_row(df, role)
        if row is None or pd.isna(row.get(x)) or pd.isna(row.get(y)):
            continue
        ax.errorbar([row[x]], [row[y]], xerr=[row.get(f"{x}_stderr", np.nan)], yerr=[row.get(f"{y}_stderr", np.nan)],
                    fmt=marker, color=color, markersize=13, capsize=2, linewidth=0.8,
                    label="target (before unlearning)" if role == "target" else "oracle (retrained)")


def _spread(group: pd.DataFrame, metric: str) -> np.ndarray:
    """Std over seeds and unlearning targets where a configuration has several (RWKU's mean ± std
    over targets), else the evaluation's standard error."""
    std = group.get(f"{metric}_std", pd.Series(np.nan, index=group.index))
    stderr = group.get(f"{metric}_stderr", pd.Series(np.nan, index=group.index))
    several = (group["n_seeds"] > 1) | (group.get("n_subjects", pd.Series(1, index=group.index)) > 1)
    return np.where(several, std, stderr).astype(float)


def _config_labels(points: pd.DataFrame, hyperparameters: list[str]) -> pd.Series:
    """``lr=0.001, gamma=10`` from the hyper-parameters (but the seed) that vary within ``points``."""
    varying = [h for h in hyperparameters if h != "seed" and h in points
               and points[h].astype(str).nunique(dropna=False) > 1]
    if not varying:
        return pd.Series("all", index=points.index)
    return points[varying].apply(lambda r: ", ".join(f"{h}={_short(v)}" for h, v in r.items()), axis=1)


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _axis_label(metric: str, direction) -> str:
    better = {"min": "lower is better", "max": "higher is better"}.get(direction, f"best at {direction}")
    return _text(f"{metric} ({better})")


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


def _one_sweep(df: pd.DataFrame) -> None:
    if df["sweep"].nunique() != 1:
        raise ValueError(f"figures show one sweep; got {df['sweep'].nunique()} (select one: df[df.sweep == name])")
