"""reports: loading sweep results, Pareto fronts and hypervolume against brute force, the summary
rule, the KL figures on a result tree laid out like ``sweeps/run.py`` writes it, the CLI, and the
import boundary (no torch / ray / deepspeed)."""

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

import reports
from reports import figures, summary
from reports.pareto import configurations, reference_point

ROOT = Path(__file__).resolve().parents[1]
GAMMAS = (3, 10, 30)
FINAL_ONLY = ("forget_verbmem_rouge_l_f1", "mia_min_k_auc", "privleak")
HEX = {"unilogit": "95357", "undial": "337b1"}


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
    return out


DEFAULT_TRIALS = (
    *({"method": "unilogit", "lr": lr, "seed": seed} for lr in (1e-3, 3e-3) for seed in (0, 1)),
    *({"method": "undial", "lr": lr, "seed": 0, "gamma": 10} for lr in (1e-3, 3e-3)),
    {"method": "undial", "lr": 1e4, "seed": 0, "gamma": 10, "fail": "diverged"},
    {"method": "undial", "lr": 3e-2, "seed": 0, "gamma": 10, "fail": "error"},
    {"method": "unilogit", "lr": 3e-2, "seed": 0, "fail": "no-result"},
    {"method": "unilogit", "lr": 1e-2, "seed": 0, "fail": "incomplete"},
)


def make_sweep(root: Path, name: str = "tiny", trials=DEFAULT_TRIALS, epochs: int = 2) -> Path:
    """A result tree as ``sweeps/run.py`` and Ray Tune write it, with synthetic numbers."""
    rng = np.random.default_rng(0)
    sweep = root / name
    sweep.mkdir(parents=True)
    (sweep / "spec.yaml").write_text(f"name: {name}\nmethods:\n  unilogit:\n    lr:\n      grid: [0.001, 0.003]\n")
    (sweep / "environment.json").write_text(json.dumps({
        "python": "3.11.7", "torch": "2.13.0+cpu", "deepspeed": "0.19.8", "ray": "2.60.0", "cuda": False,
        "scaling": {"workers": 2, "use_gpu": False, "zero_stage": 2}, "training": {"epochs": epochs, "seeds": [0, 1]},
        "target": "/cache/target", "oracle": "/cache/oracle", "data": "/cache/data"}))
    target = {"role": "target", **metric_values(0.0, rng)}
    oracle = {"role": "oracle", **metric_values(0.9, rng), "retain_qa_rouge_l_recall": 0.95}
    oracle.update({k: 0.0 for k in oracle if k.startswith("kl_")})
    (sweep / "reference_rows.json").write_text(json.dumps({"rows": [target, oracle], "directions": directions()}))
    counters = dict.fromkeys(HEX, 0)
    for spec in trials:
        method, fail = spec["method"], spec.get("fail")
        index = counters[method] = counters.get(method, 0) + 1
        trial_id = f"{HEX.get(method, 'abcde')}_{index - 1:05d}"
        params = {k: v for k, v in spec.items() if k not in ("method", "fail", "drop", "method_name", "error")}
        trial = sweep / method / f"run_trial_{trial_id}_{index - 1}_lr={spec['lr']:.4f},seed={spec['seed']}_2026-11-28"
        trial.mkdir(parents=True)
        (trial / "params.json").write_text(json.dumps(params))
        rows = []
        for epoch in range(1, {"diverged": 2, "incomplete": 2, "error": 1, "no-result": 1}.get(fail, epochs + 1)):
            strength = min(1.0, spec["lr"] * 150 * epoch)
            row = {"epoch": epoch, **metric_values(strength, rng, final=epoch == epochs)}
            for dropped in spec.get("drop", ()):
                row.pop(dropped, None)
                row.pop(f"{dropped}_stderr", None)
            row.update(loss=1.0, forget_loss=0.8, retain_loss=0.2, step=4 * epoch, lr=spec["lr"], world_size=2,
                       zero_stage=2, micro_batch=4, grad_accum=1, effective_batch=8, device="cpu", status="ok",
                       final=epoch == epochs, method=spec.get("method_name", method), wall_s=5.0 * epoch,
                       train_s=1.0, eval_s=0.5, trial_id=trial_id, training_iteration=epoch, time_total_s=6.0,
                       config=params, hostname="vm")
            rows.append(row)
        if fail != "no-result":
            (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if fail in ("diverged", "error", "no-result"):
            inner = {"diverged": "unlearn.loop.Diverged: non-finite loss after step 6: {'loss': nan}",
                     "error": spec.get("error", "RuntimeError: worker died"),
                     "no-result": "ValueError: bad value"}[fail]
            (trial / "error.txt").write_text(f"{inner}\n\nray.exceptions.RayTaskError: ...\n{inner}\n")
        if not fail:
            (sweep / "train" / f"train-{trial_id}" / "checkpoint_2026-11-28_03-03-09" / "model").mkdir(parents=True)
    return sweep


@pytest.fixture
def sweep(tmp_path) -> Path:
    return make_sweep(tmp_path)


def test_load_keeps_every_trial_and_marks_failures(sweep):
    df = reports.load(sweep)
    refs = df[df["role"] != "trial"]
    assert sorted(refs["role"]) == ["oracle", "target"]
    trials = df[df["role"] == "trial"]
    statuses = sorted(trials.drop_duplicates("trial")["status"])
    assert statuses == ["diverged", "error", "error", "incomplete", *["ok"] * 6]
    assert len(trials) == 6 * 2 + 4  # finished × epochs; diverged and incomplete after 1 epoch; 2 errors, no result
    diverged = trials[trials["status"] == "diverged"].iloc[0]
    assert diverged["error"].startswith("unlearn.loop.Diverged: non-finite loss") and diverged["epoch"] == 1
    no_result = trials[trials["error"] == "ValueError: bad value"].iloc[0]
    assert no_result["method"] == "unilogit" and math.isnan(no_result["epoch"]) and no_result["trial"] == "95357_00004"
    ok = trials[trials["status"] == "ok"]
    assert ok["model_dir"].map(lambda p: Path(p).is_dir()).all()
    assert trials.loc[trials["status"] != "ok", "model_dir"].isna().all()
    assert {"lr", "seed", "gamma", "epoch", "step", "lr_current", "world_size", "zero_stage", "effective_batch",
            "forget_qa_rouge_l_recall", "forget_qa_rouge_l_recall_stderr", "trial_id", "time_total_s"} <= set(df)
    assert "config" not in df  # Tune's copy of params.json
    assert df.attrs["hyperparameters"] == ["lr", "seed", "gamma"]
    assert reports.directions(df)["privleak"] == 0.0 and reports.directions(df)["retain_qa_rouge_l_recall"] == "max"
    assert ok.loc[ok["epoch"] == 1, "privleak"].isna().all() and ok.loc[ok["epoch"] == 2, "privleak"].notna().all()
    assert df.attrs["sweeps"]["tiny"]["environment"]["target"] == "/cache/target"


def test_load_accepts_a_storage_directory_and_rejects_empty_ones(tmp_path):
    make_sweep(tmp_path / "storage", "a")
    make_sweep(tmp_path / "storage", "b", trials=DEFAULT_TRIALS[:1])
    df = reports.load(tmp_path / "storage")
    assert sorted(df["sweep"].unique()) == ["a", "b"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no sweep results"):
        reports.load(tmp_path / "empty")


def test_export_csv_and_parquet(sweep, tmp_path):
    df = reports.load(sweep)
    df["batch"] = df["lr"].map({1e-3: 8, 3e-3: "auto"}).astype(object)  # a hyper-parameter of two types
    back = pd.read_parquet(reports.export(df, tmp_path / "t.parquet"))
    assert back.attrs["directions"] == reports.directions(df)
    assert len(back) == len(df) and back["status"].tolist() == df["status"].tolist()
    assert back["final"].dropna().tolist() == df["final"].dropna().tolist()
    assert set(back["batch"].dropna()) == {"8", "auto"}
    csv = pd.read_csv(reports.export(df, tmp_path / "t.csv"))
    np.testing.assert_allclose(csv["forget_qa_rouge_l_recall"], df["forget_qa_rouge_l_recall"])
    with pytest.raises(ValueError, match="csv or .parquet"):
        reports.export(df, tmp_path / "t.xlsx")


def _brute_front(values: np.ndarray, objectives: dict) -> list[int]:
    s = reports.pareto.scores(values, objectives)
    valid = [i for i in range(len(s)) if not np.isnan(s[i]).any()]
    return [i for i in valid
            if not any(np.all(s[j] <= s[i]) and np.any(s[j] < s[i]) for j in valid)]


def test_pareto_front_matches_brute_force_with_ties_and_nan():
    rng = np.random.default_rng(1)
    for trial in range(300):
        n, d = rng.integers(0, 40), rng.integers(1, 4)
        values = rng.integers(0, 4, size=(n, d)).astype(float)  # few levels: many ties and duplicates
        values[rng.random((n, d)) < 0.1] = np.nan
        objectives = {f"m{j}": [rng.choice(["min", "max"]), 1.5][rng.integers(0, 2)] for j in range(d)}
        df = pd.DataFrame(values, columns=list(objectives), index=rng.permutation(n) + 100)
        front = reports.pareto_front(df, objectives)
        assert list(front.index) == [df.index[i] for i in _brute_front(values, objectives)], (trial, objectives)


def test_pareto_front_keeps_exact_duplicates_and_other_columns():
    df = pd.DataFrame({"f": [0.1, 0.1, 0.5, np.nan, 0.2], "r": [0.7, 0.7, 0.9, 1.0, 0.6], "name": list("abcde")})
    front = reports.pareto_front(df, {"f": "min", "r": "max"})
    assert front["name"].tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="direction of f"):
        reports.pareto_front(df, {"f": "lower"})


def test_hypervolume_of_hand_made_fronts():
    staircase = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    assert reports.hypervolume(staircase, {"a": "min", "b": "min"}, (4, 4)) == 1 + 2 + 3
    assert reports.hypervolume(-staircase, {"a": "max", "b": "max"}, (-4, -4)) == 6
    assert reports.hypervolume(staircase + 0.5, {"a": 0.5, "b": 0.5}, (4.5, 4.5)) == 6  # distance to a target
    assert reports.hypervolume(np.vstack([staircase, [[5, 0]], [[np.nan, 0]]]), {"a": "min", "b": "min"}, (4, 4)) == 6
    assert reports.hypervolume(staircase, {"a": "min", "b": "min"}, (1, 4)) == 0.0  # nothing strictly inside
    assert reports.hypervolume([[0, 0, 0]], {"a": "min", "b": "min", "c": "min"}, (1, 2, 3)) == 6
    two = [[0, 0, 1], [1, 1, 0]]  # 2·2·1 + 1·1·2 − the shared 1·1·1
    assert reports.hypervolume(two, {"a": "min", "b": "min", "c": "min"}, (2, 2, 2)) == 5
    df = pd.DataFrame({"forget": [0.2, 0.5, 1.0], "retain": [0.5, 0.9, 0.4]})  # default reference: worst = (1.0, 0.4)
    assert reports.hypervolume(df, {"forget": "min", "retain": "max"}) == pytest.approx(0.8 * 0.1 + 0.5 * 0.4)


@pytest.mark.parametrize("d", [2, 3])
def test_hypervolume_equals_counting_unit_cells(d):
    """Integer points: the dominated region is a union of unit cells, so counting them is exact."""
    rng = np.random.default_rng(d)
    size = 6
    for _ in range(40):
        s = rng.integers(0, size, size=(rng.integers(1, 12), d))
        cells = sum(any(np.all(p <= c) for p in s) for c in itertools.product(range(size), repeat=d))
        kinds = [rng.choice(["min", "max", "target"]) for _ in range(d)]
        objectives = {f"m{j}": {"min": "min", "max": "max", "target": 0.5}[k] for j, k in enumerate(kinds)}
        sign = rng.choice([-1, 1], size=s.shape)  # either side of a target value is the same distance
        values = np.column_stack([{"min": s[:, j], "max": -s[:, j], "target": 0.5 + sign[:, j] * s[:, j]}[k]
                                  for j, k in enumerate(kinds)])
        reference = [{"min": size, "max": -size, "target": 0.5 - size}[k] for k in kinds]
        assert reports.hypervolume(values, objectives, reference) == pytest.approx(cells)


def test_reference_point_is_the_worst_value_per_objective():
    df = pd.DataFrame({"f": [0.2, np.nan, 0.9], "r": [0.5, 0.1, 0.8], "p": [-30.0, 10.0, 5.0]})
    np.testing.assert_allclose(reference_point(df, {"f": "min", "r": "max", "p": 0.0}), [0.9, 0.1, -30.0])


def test_configurations_average_seeds(sweep):
    df = reports.load(sweep)
    points = configurations(figures.ok_trials(df))
    row = points[(points["method"] == "unilogit") & (points["lr"] == 1e-3) & (points["epoch"] == 2)].iloc[0]
    seeds = df[(df["method"] == "unilogit") & (df["lr"] == 1e-3) & (df["epoch"] == 2)]
    metric = "retain_qa_rouge_l_recall"
    assert row["n_seeds"] == 2 and row["trials"] == "95357_00000, 95357_00001"
    assert row[metric] == pytest.approx(seeds[metric].mean())
    assert row[f"{metric}_std"] == pytest.approx(seeds[metric].std(ddof=1))
    assert row[f"{metric}_stderr"] == pytest.approx(math.sqrt((seeds[f"{metric}_stderr"] ** 2).sum()) / 2)
    assert len(points) == (2 + 2) * 2  # unilogit and undial, 2 lrs each, 2 epochs; failed trials excluded
    df["batch"] = df["seed"].map({0: "auto", 1: 8}).astype(object)  # a hyper-parameter of str and int
    df.attrs["hyperparameters"] = [*df.attrs["hyperparameters"], "batch"]
    assert len(configurations(figures.ok_trials(df))) == len(points) + 2 * 2  # unilogit's seeds now differ


def test_selection_rule(sweep):
    df = reports.load(sweep)
    chosen = summary.select(df).set_index("method")
    oracle_forget = df.loc[df["role"] == "oracle", summary.FORGET].iloc[0]
    points = configurations(figures.ok_trials(df))
    final = points[points["epoch"] == 2]
    for method in ("unilogit", "undial"):
        mine = final[(final["method"] == method) & (final[summary.FORGET] <= oracle_forget + summary.TOLERANCE)]
        if mine.empty:
            assert "no finished configuration" in chosen.loc[method, "note"]
        else:
            assert chosen.loc[method, summary.RETAIN] == mine[summary.RETAIN].max()
    df.loc[df["role"] == "oracle", summary.FORGET] = 1.0  # everything qualifies: the best retain wins
    chosen = summary.select(df).set_index("method")
    assert chosen.loc["unilogit", summary.RETAIN] == final.loc[final["method"] == "unilogit", summary.RETAIN].max()


def test_front_figure_draws_each_methods_front_and_the_references(sweep):
    df = reports.load(sweep)
    x, y = figures.FRONT_PAIRS[0]
    fig = figures.pareto_figure(df, x, y)
    ax = fig.axes[0]
    points = configurations(figures.ok_trials(df))
    for method in ("undial", "unilogit"):
        line = next(line for line in ax.lines if line.get_label() == f"_front {method}")
        front = reports.pareto_front(points[points["method"] == method], {x: "min", y: "max"}).sort_values(x)
        np.testing.assert_allclose(line.get_xdata(), front[x])
        np.testing.assert_allclose(line.get_ydata(), front[y])
        assert line.get_drawstyle() == "steps-post" and len(front) >= 1
    labels = ax.get_legend_handles_labels()[1]
    assert {"undial", "unilogit", "target (before unlearning)", "oracle (retrained)"} <= set(labels)


def test_kl_panels_hold_real_values(sweep):
    df = reports.load(sweep)
    target = df[df["role"] == "target"].iloc[0]
    unilogit = figures.ok_trials(df)[lambda d: d["method"] == "unilogit"]
    # (a) bars: Unilogit at start and during training, UnDIAL per γ; both directions, both token sets
    fig = figures.softlabel_kl_figure(df)
    for ax, tokens in zip(fig.axes, figures.TOKEN_SETS):
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        forward = [bar.get_height() for bar in bars[0]]
        expected = [target[f"softlabel_kl_oracle_unilogit_{tokens}"],
                    unilogit[f"softlabel_kl_oracle_unilogit_{tokens}"].mean(),
                    *[target[f"softlabel_kl_oracle_undial_g{g}_{tokens}"] for g in GAMMAS]]
        np.testing.assert_allclose(forward, expected)
        assert len(bars) == 2 and np.isfinite([bar.get_height() for bar in bars[1]]).all()
    # (b) Unilogit's configurations over epochs from the target's value; UnDIAL's fixed labels as lines
    fig = figures.softlabel_kl_progress_figure(df)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        curves = [line for line in ax.lines if line.get_label().startswith("unilogit")]
        assert len(curves) == 2 and all(np.isfinite(line.get_ydata()).all() and len(line.get_xdata()) == 3
                                        for line in curves)
        assert sum(line.get_label().startswith("undial") for line in ax.lines) == len(GAMMAS)
    # (c) every configuration's model KL, and the target as baseline
    fig = figures.model_kl_figure(df)
    for ax, metric in zip(fig.axes, ["kl_oracle_model_forget", "kl_oracle_model_forget_facts",
                                     "kl_model_oracle_forget", "kl_model_oracle_forget_facts"]):
        baseline = next(line for line in ax.lines if line.get_label() == "target (baseline)")
        assert baseline.get_ydata()[0] == target[metric]
        curves = [line for line in ax.lines if line.get_xdata()[-1] == 2]
        assert len(curves) == 4 and all(line.get_ydata()[0] == target[metric] for line in curves)


def test_figures_tolerate_missing_metrics_and_no_finished_trial(tmp_path):
    sweep = make_sweep(tmp_path, trials=[{"method": "unilogit", "lr": 1e-3, "seed": 0, "fail": "no-result"}])
    df = reports.load(sweep)
    for fig in (figures.pareto_figure(df, *figures.FRONT_PAIRS[0]), figures.trajectory_figure(df),
                figures.softlabel_kl_figure(df), figures.softlabel_kl_progress_figure(df), figures.model_kl_figure(df)):
        assert fig.axes
    assert summary.select(df)["note"].str.contains("no finished configuration").all()
    with pytest.raises(ValueError, match="one sweep"):
        figures.trajectory_figure(pd.concat([df, df.assign(sweep="other")]))


def test_cli_writes_one_report_of_several_sweeps(sweep, tmp_path, capsys):
    from sweeps import cli

    other = make_sweep(tmp_path / "more", "second", trials=DEFAULT_TRIALS[-1:])  # one incomplete trial
    out = tmp_path / "report.html"
    assert cli.main(["report", str(sweep), str(other), "-o", str(out), "--include-examples"]) == 0
    assert "2 sweep(s), 11 trial(s), 5 not finished" in capsys.readouterr().out
    text = out.read_text()
    assert "--include-examples" in text and "Sweep tiny" in text and "Sweep second" in text
    assert text.count("data:image/png;base64,") == 2 * 7  # the second: references only, "no finished trial"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no sweep results"):
        cli.main(["report", str(tmp_path / "empty"), "-o", str(out)])


def test_reports_does_not_import_torch_ray_deepspeed_or_the_other_packages():
    code = ("import sys, reports, reports.cli, reports.results, reports.pareto, reports.figures, reports.summary, "
            "reports.html\nreports.load, reports.render\n"
            "bad = ('torch', 'ray', 'deepspeed', 'benchmarks', 'unlearn', 'sweeps')\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in bad)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def test_report_command_module_is_light():
    code = "import sys, reports.cli; print(','.join(m for m in ('pandas', 'matplotlib', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""
