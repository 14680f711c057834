"""Result trees laid out as ``sweeps/run.py`` and Ray Tune write them, with synthetic numbers and
the benchmark declaration of RECORD.md in ``reference_rows.json`` — for the ``reports`` tests."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np

GAMMAS = (3, 10, 30)
FINAL_ONLY = ("forget_verbmem_rouge_l_f1", "mia_min_k_auc", "privleak")
HEX = {"unilogit": "95357", "undial": "337b1"}
FRONT_SVG = '<svg xmlns="http://www.w3.org/2000/svg" class="front"'  # how a front figure starts in a report
FORGET, RETAIN, UTILITY = "forget_qa_rouge_l_recall", "retain_qa_rouge_l_recall", "utility_qa_rouge_l_recall"
DECLARED = object()  # make_sweep's default: the synthetic declaration below


def directions() -> dict:
    """The synthetic benchmark's metrics and directions, as ``reference_rows.json`` records them."""
    out = {f"forget_{g}_rouge_l_recall": "min" for g in ("fb", "qa", "aa", "all", "qa_paraphrase")}
    out["forget_verbmem_rouge_l_f1"] = "min"
    out.update({f"{g}_rouge_l_recall": "max" for g in ("retain_qa", "retain_qa_paraphrase", "neighbor_fb",
                                                         "neighbor_qa", "utility_qa")})
    out.update(mia_min_k_auc=0.5, privleak=0.0)
    for a, b in (("oracle", "model"), ("model", "oracle")):
        out.update({f"kl_{a}_{b}_{tokens}": "min" for tokens in ("forget", "forget_facts", "retain")})
    for label in ("unilogit", *(f"undial_g{g}" for g in GAMMAS)):
        for tokens in ("forget", "forget_facts"):
            out[f"softlabel_kl_oracle_{label}_{tokens}"] = out[f"softlabel_kl_{label}_oracle_{tokens}"] = "min"
    return out


def _role(name: str) -> str:
    if "kl_" in name:
        return "kl"
    if name in ("mia_min_k_auc", "privleak"):
        return "privacy"
    return {"forget": "forget", "retain": "retain", "neighbor": "neighbour", "utility": "utility"}[name.split("_")[0]]


def declaration(**changes) -> dict:
    """The synthetic benchmark's declaration (RECORD.md), with ``changes`` applied on top."""
    out = {
        "name": "synthetic",
        "needs_oracle": True,
        "metrics": {name: {"direction": direction, "role": _role(name), "scale": 100 if name == "privleak" else 1,
                           "description": f"the {name.replace('_', ' ')}"}
                    for name, direction in directions().items()},
        "fronts": [{"x": FORGET, "y": RETAIN, "size": None},
                   {"x": "forget_verbmem_rouge_l_f1", "y": UTILITY, "size": None},
                   {"x": "forget_all_rouge_l_recall", "y": "neighbor_qa_rouge_l_recall", "size": None}],
        "trajectories": [FORGET, RETAIN, UTILITY],
        "selection": {"forget": FORGET, "retain": RETAIN, "oracle_tolerance": 0.05, "target_fraction": 0.5,
                      "floors": {UTILITY: 0.5}},
        "average_over": [],
        "facets": [],
    }
    out.update(copy.deepcopy(changes))
    return out


def metric_values(strength: float, rng, final: bool = True) -> dict:
    """Plausible metrics of a model unlearned with ``strength`` (0 = the target, 1 = wrecked)."""
    out = {}
    for name in directions():
        if name in FINAL_ONLY and not final:
            continue
        if name.startswith("softlabel_kl") and "undial" in name:
            value = 1.0 + GAMMAS.index(int(name.split("_g")[1].split("_")[0])) + ("facts" in name)  # fixed labels
        elif name.startswith(("softlabel_kl", "kl_")):
            value = 2.0 + 3 * strength + ("facts" in name) + 0.1 * rng.random()
        elif name.startswith("forget"):
            value = max(0.0, 1.0 - strength + 0.05 * rng.random())
        elif name == "privleak":
            value = -100 * (1 - strength)
        elif name == "mia_min_k_auc":
            value = 0.5 * strength
        else:
            value = 0.95 - 0.5 * strength + 0.05 * rng.random()
        out[name], out[f"{name}_stderr"] = value, 0.01 + 0.02 * rng.random()
        if not name.startswith(("softlabel_kl", "kl_", "privleak", "mia_")):  # per-probe scores, their mean the value
            out[f"{name}_probes"] = [value + d for d in PROBE_OFFSETS]
    return out


PROBE_OFFSETS = (-0.06, 0.06, -0.03, 0.03, -0.02, 0.02, 0.0, 0.0)  # 8 probes around each value


DEFAULT_TRIALS = (
    *({"method": "unilogit", "lr": lr, "seed": seed} for lr in (1e-3, 3e-3) for seed in (0, 1)),
    *({"method": "undial", "lr": lr, "seed": 0, "gamma": 10} for lr in (1e-3, 3e-3)),
    {"method": "undial", "lr": 1e4, "seed": 0, "gamma": 10, "fail": "diverged"},
    {"method": "undial", "lr": 3e-2, "seed": 0, "gamma": 10, "fail": "error"},
    {"method": "unilogit", "lr": 3e-2, "seed": 0, "fail": "no-result"},
    {"method": "unilogit", "lr": 1e-2, "seed": 0, "fail": "running"},
)
_RESERVED = ("method", "fail", "drop", "method_name", "error", "values")


def _apply(row: dict, overrides: dict) -> dict:
    """``overrides`` on ``row``; a value of ``None`` removes the metric (and its standard error)."""
    for key, value in overrides.items():
        row.pop(f"{key}_probes", None)
        if value is None:
            row.pop(key, None)
            row.pop(f"{key}_stderr", None)
        else:
            row[key] = value
    return row


def make_sweep(root: Path, name: str = "tiny", trials=DEFAULT_TRIALS, epochs: int = 2, *, benchmark=DECLARED,
               references=None, facets: dict | None = None) -> Path:
    """A result tree as ``sweeps/run.py`` and Ray Tune write it, with synthetic numbers.

    ``benchmark``: the declaration written into ``reference_rows.json`` (default: the synthetic one,
    its ``facets`` the names of ``facets``; ``None``: none, as an older sweep). ``references``: the
    reference rows as ``{"role", <facet>: value, <metric>: value}`` dicts over plausible defaults
    (default: a target and an oracle per facet combination). ``facets``: facet → values. A trial's
    ``values`` override its metrics at every epoch; a ``None`` value removes the metric."""
    rng = np.random.default_rng(0)
    facets = facets or {}
    sweep = root / name
    sweep.mkdir(parents=True)
    (sweep / "spec.yaml").write_text(f"name: {name}\nmethods:\n  unilogit:\n    lr:\n      grid: [0.001, 0.003]\n")
    (sweep / "environment.json").write_text(json.dumps({
        "python": "3.11.7", "torch": "2.13.0+cpu", "deepspeed": "0.19.8", "ray": "2.60.0", "cuda": False,
        "scaling": {"workers": 2, "use_gpu": False, "zero_stage": 2}, "training": {"epochs": epochs, "seeds": [0, 1]},
        "target": "/cache/target", "oracle": "/cache/oracle", "data": "/cache/data"}))
    if references is None:
        combos = [dict(zip(facets, values)) for values in itertools.product(*facets.values())]
        references = [{"role": role, **combo} for combo in combos for role in ("target", "oracle")]
    rows = []
    for reference in references:
        row = {"role": reference["role"], **metric_values(0.0 if reference["role"] == "target" else 0.9, rng)}
        if reference["role"] == "oracle":
            row[RETAIN] = 0.95
            row.update({k: 0.0 for k in row if k.startswith("kl_")})
        rows.append(_apply(row, {k: v for k, v in reference.items() if k != "role"}))
    record = {"rows": rows, "directions": directions()}
    if benchmark is DECLARED:
        benchmark = declaration(facets=list(facets))
    if benchmark is not None:
        record["benchmark"] = benchmark
    (sweep / "reference_rows.json").write_text(json.dumps(record))
    counters: dict = {}
    for spec in trials:
        method, fail = spec["method"], spec.get("fail")
        index = counters[method] = counters.get(method, 0) + 1
        prefix = HEX.get(method) or hashlib.sha256(method.encode()).hexdigest()[:5]
        trial_id = f"{prefix}_{index - 1:05d}"
        params = {k: v for k, v in spec.items() if k not in _RESERVED}
        trial = sweep / method / f"run_trial_{trial_id}_{index - 1}_lr={spec['lr']:.4f},seed={spec['seed']}_2026-11-28"
        trial.mkdir(parents=True)
        (trial / "params.json").write_text(json.dumps(params))
        results = []
        for epoch in range(1, {"diverged": 2, "running": 2, "error": 1, "no-result": 1}.get(fail, epochs + 1)):
            strength = min(1.0, spec["lr"] * 150 * epoch)
            row = {"epoch": epoch, **metric_values(strength, rng, final=epoch == epochs)}
            for dropped in spec.get("drop", ()):
                row.pop(dropped, None)
                row.pop(f"{dropped}_stderr", None)
            _apply(row, spec.get("values", {}))
            row.update(loss=1.0, forget_loss=0.8, retain_loss=0.2, step=4 * epoch, lr=spec["lr"], world_size=2,
                       zero_stage=2, micro_batch=4, grad_accum=1, effective_batch=8, device="cpu", status="ok",
                       final=epoch == epochs, method=spec.get("method_name", method), wall_s=5.0 * epoch,
                       train_s=1.0, eval_s=0.5, trial_id=trial_id, training_iteration=epoch, time_total_s=6.0,
                       config=params, hostname="vm")
            results.append(row)
        if fail != "no-result":
            (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
        if fail in ("diverged", "error", "no-result"):
            inner = {"diverged": "unlearn.loop.Diverged: non-finite loss after step 6: {'loss': nan}",
                     "error": spec.get("error", "RuntimeError: worker died"),
                     "no-result": "ValueError: bad value"}[fail]
            (trial / "error.txt").write_text(f"{inner}\n\nray.exceptions.RayTaskError: ...\n{inner}\n")
        if not fail:
            (sweep / "train" / f"train-{trial_id}" / "checkpoint_2026-11-28_03-03-09" / "model").mkdir(parents=True)
    return sweep
