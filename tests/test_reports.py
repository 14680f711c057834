"""reports: loading sweep results and the benchmark declaration they record, Pareto fronts and
hypervolume against brute force, the declared selection rule (oracle bound, target fraction, floors,
facets), the figures the declaration asks for, on result trees laid out like ``sweeps/run.py`` writes
them, the CLI, and the import boundary (no torch / ray / deepspeed, no benchmark's metric names)."""

import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

import reports
from helpers.report_sweeps import (
    DEFAULT_TRIALS,
    FORGET,
    FRONT_SVG,
    GAMMAS,
    RETAIN,
    UTILITY,
    declaration,
    make_sweep,
)
from reports import figures, summary
from reports.pareto import configurations, reference_point
from reports.results import facet_groups

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sweep(tmp_path) -> Path:
    return make_sweep(tmp_path)


def test_load_keeps_every_trial_and_marks_failures(sweep):
    df = reports.load(sweep)
    refs = df[df["role"] != "trial"]
    assert sorted(refs["role"]) == ["oracle", "target"]
    trials = df[df["role"] == "trial"]
    statuses = sorted(trials.drop_duplicates("trial")["status"])
    assert statuses == ["diverged", "error", "error", *["ok"] * 6, "running"]
    assert len(trials) == 6 * 2 + 4  # finished × epochs; diverged and running after 1 epoch; 2 errors, no result
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
    # the benchmark's declaration travels with the sweep, reachable from the frame and from a slice of it
    assert df.attrs["sweeps"]["tiny"]["benchmark"] == declaration()
    declared = reports.declaration(df[df["sweep"] == "tiny"])
    assert declared["declared"] and declared["selection"]["forget"] == FORGET and declared["facets"] == []
    assert [f["x"] for f in declared["fronts"]] == [f["x"] for f in declaration()["fronts"]]
    assert df.attrs["scales"]["privleak"] == 100 and df.attrs["scales"][FORGET] == 1


def test_declaration_needs_one_sweep_or_a_name(tmp_path):
    make_sweep(tmp_path / "storage", "a")
    make_sweep(tmp_path / "storage", "b", trials=DEFAULT_TRIALS[:1],
               benchmark=declaration(selection={"forget": "forget_fb_rouge_l_recall", "retain": RETAIN}))
    df = reports.load(tmp_path / "storage")
    with pytest.raises(ValueError, match="name one"):
        reports.declaration(df)
    assert reports.declaration(df, "b")["selection"]["forget"] == "forget_fb_rouge_l_recall"
    assert reports.declaration(df, "a")["selection"]["forget"] == FORGET


def test_conflicting_scales_are_refused_in_one_line(tmp_path):
    make_sweep(tmp_path / "storage", "a")
    rescaled = declaration()
    rescaled["metrics"][FORGET]["scale"] = 100
    make_sweep(tmp_path / "storage", "b", trials=DEFAULT_TRIALS[:1], benchmark=rescaled)
    with pytest.raises(ValueError, match="load them separately") as error:
        reports.load(tmp_path / "storage")
    assert "\n" not in str(error.value) and FORGET in str(error.value)
    assert reports.load(tmp_path / "storage" / "b").attrs["scales"][FORGET] == 100  # each alone is fine


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
    assert reports.declaration(back) == reports.declaration(df) and back.attrs["scales"] == df.attrs["scales"]
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


def test_configurations_average_over_the_declared_targets(tmp_path):
    """``average_over`` columns are averaged like seeds; a sweep declaring none keeps them apart, and
    a sweep without a declaration averages over ``subject``."""
    trials = [{"method": "ga", "lr": lr, "seed": 0, "subject": subject, "values": {FORGET: value}}
              for lr in (1e-3, 2e-3) for subject, value in (("Ann", 0.2), ("Bob", 0.4))]
    expected = {"averaged": (2, 2), "kept apart": (4, 1), "no declaration": (2, 2)}
    for name, benchmark in (("averaged", declaration(average_over=["subject"])),
                            ("kept apart", declaration(average_over=[])), ("no declaration", None)):
        df = reports.load(make_sweep(tmp_path, name.replace(" ", "-"), trials, benchmark=benchmark))
        points = configurations(df)
        points = points[points["epoch"] == 2]
        assert (len(points), points["n_subjects"].max()) == expected[name], name
        if expected[name][1] == 2:
            assert points[FORGET].tolist() == pytest.approx([0.3, 0.3])


def _values(forget, retain, utility=0.9, **more) -> dict:
    return {FORGET: forget, RETAIN: retain, UTILITY: utility, **more}


TARGET = {"role": "target", FORGET: 0.8, RETAIN: 0.95, UTILITY: 0.9}
ORACLE = {"role": "oracle", FORGET: 0.1, RETAIN: 0.95, UTILITY: 0.9}


def _rule_sweep(tmp_path, points, references=(TARGET, ORACLE), name="rule", **changes) -> pd.DataFrame:
    """A sweep whose finished trials hold ``points`` ((method, lr, values)) at every epoch."""
    trials = [{"method": method, "lr": lr, "seed": 0, "values": values} for method, lr, values in points]
    return reports.load(make_sweep(tmp_path, name, trials, references=list(references),
                                   benchmark=declaration(**changes)))


@pytest.mark.parametrize("scale", [1, 100])
def test_selection_bound_is_the_oracles_forget_plus_the_tolerance_on_the_declared_scale(tmp_path, scale):
    metrics = declaration()["metrics"]
    metrics[FORGET]["scale"] = scale
    oracle = {**ORACLE, FORGET: 0.1 * scale}
    points = [("ga", 1e-3, _values(0.12 * scale, 0.6)), ("ga", 2e-3, _values(0.14 * scale, 0.8)),
              ("ga", 3e-3, _values(0.30 * scale, 0.95)),  # the best retain, but over the bound 0.15
              ("ga", 4e-3, _values(0.05 * scale, 0.8)),  # ties with 2e-3 on retain: the lower forget wins
              ("npo", 1e-3, _values(0.5 * scale, 0.9))]
    chosen = summary.select(_rule_sweep(tmp_path, points, (TARGET, oracle), metrics=metrics)).set_index("method")
    assert chosen.loc["ga", "lr"] == 4e-3 and chosen.loc["ga", "note"] == ""
    assert chosen.loc["ga", FORGET] == pytest.approx(0.05 * scale) and chosen.loc["ga", RETAIN] == 0.8
    assert chosen.loc["ga", "bound"] == pytest.approx(0.15 * scale)
    assert f"no finished configuration has {FORGET} ≤ {0.15 * scale:.4g}" in chosen.loc["npo", "note"]
    assert "oracle" in chosen.loc["npo", "note"]


@pytest.mark.parametrize("oracle", ["absent", "without the forget metric"])
def test_selection_without_an_oracle_value_uses_the_target_fraction(tmp_path, oracle):
    references = [{**TARGET, FORGET: 0.6}]
    if oracle != "absent":
        references.append({**ORACLE, FORGET: None})
    points = [("ga", 1e-3, _values(0.25, 0.7)), ("ga", 2e-3, _values(0.35, 0.9)),  # 0.35 > 0.5 × 0.6
              ("ga", 3e-3, _values(0.29, 0.7))]  # ties on retain, higher forget: loses
    chosen = summary.select(_rule_sweep(tmp_path, points, references)).set_index("method")
    assert chosen.loc["ga", "lr"] == 1e-3 and chosen.loc["ga", "bound"] == pytest.approx(0.3)
    changed = summary.select(_rule_sweep(tmp_path, points, references, name="other",
                                         selection={**declaration()["selection"], "target_fraction": 0.6}))
    assert changed.set_index("method").loc["ga", "lr"] == 2e-3  # bound 0.36 now admits 0.35


def test_a_floor_excludes_a_wrecked_model_that_would_otherwise_win(tmp_path):
    points = [("ga", 1e-3, _values(0.02, 0.85, utility=0.1)),  # wrecked: utility far below the target's 0.9
              ("ga", 2e-3, _values(0.10, 0.80, utility=0.85))]
    without = summary.select(_rule_sweep(tmp_path, points, name="no-floor",
                                         selection={**declaration()["selection"], "floors": {}}))
    assert without.set_index("method").loc["ga", "lr"] == 1e-3
    with_floor = summary.select(_rule_sweep(tmp_path, points, name="floor")).set_index("method")
    assert with_floor.loc["ga", "lr"] == 2e-3 and with_floor.loc["ga", "note"] == ""
    strict = summary.select(_rule_sweep(tmp_path, points, name="strict",
                                        selection={**declaration()["selection"], "floors": {UTILITY: 0.99}}))
    note = strict.set_index("method").loc["ga", "note"]
    assert UTILITY in note and "0.891" in note and "0.99 × the target's" in note  # 0.99 × 0.9


def test_selection_notes_when_the_rule_cannot_apply(tmp_path):
    points = [("ga", 1e-3, _values(0.02, 0.85))]
    no_reference = summary.select(_rule_sweep(tmp_path, points, [{**ORACLE, FORGET: None}], name="a"))
    assert no_reference["note"].str.startswith("rule not applicable").all()
    assert no_reference["note"].str.contains("oracle row or of the target row").all()
    no_retain = summary.select(_rule_sweep(tmp_path, [("ga", 1e-3, _values(0.02, None))], name="b"))
    assert no_retain["note"].tolist() == [f"rule not applicable: no trial records {RETAIN}"]
    no_rule = summary.select(_rule_sweep(tmp_path, points, name="c", selection=None))
    assert no_rule["note"].str.contains("declares no selection rule").all()


def test_rule_sentence_comes_from_the_declaration():
    sentence = summary.rule(declaration())
    assert f"the highest {RETAIN}" in sentence and f"whose {FORGET} is at most the oracle's + 0.05" in sentence
    assert "0.5 × the target's" in sentence and f"whose {UTILITY} is at least 0.5 × the target's" in sentence
    scaled = declaration()
    scaled["metrics"][FORGET]["scale"] = 100
    assert "the oracle's + 5 " in summary.rule(scaled)
    assert "forget_size" in summary.rule(declaration(facets=["forget_size"]))
    assert "declares no selection rule" in summary.rule(reports.results._normalise(None))


FACET_TRIALS = [{"method": "ga", "lr": lr, "seed": 0, "forget_size": size, "values": _values(forget, retain)}
                for size in (1, 2) for lr, forget, retain in ((1e-3, 0.12, 0.5), (2e-3, 0.4, 0.9))]
FACET_REFERENCES = [{"role": "target", "forget_size": 1, FORGET: 0.9, RETAIN: 0.95},
                    {"role": "oracle", "forget_size": 1, FORGET: 0.1, RETAIN: 0.95},
                    {"role": "target", "forget_size": 2, FORGET: 0.8, RETAIN: 0.95},
                    {"role": "oracle", "forget_size": 2, FORGET: 0.5, RETAIN: 0.95}]


@pytest.fixture
def faceted(tmp_path) -> pd.DataFrame:
    return reports.load(make_sweep(tmp_path, "faceted", FACET_TRIALS, references=FACET_REFERENCES,
                                   facets={"forget_size": [1, 2]}))


def test_facets_are_separate_problems_for_selection_and_hypervolume(faceted):
    """forget_size=1: bound 0.1 + 0.05 admits only forget 0.12; forget_size=2: bound 0.55 admits both.
    Pooled (oracle mean 0.3), both would pick the same configuration."""
    chosen = summary.select(faceted)
    assert chosen["facet"].tolist() == ["forget_size=1", "forget_size=2"]
    assert chosen["forget_size"].tolist() == [1, 2] and chosen["lr"].tolist() == [1e-3, 2e-3]
    assert chosen["bound"].tolist() == pytest.approx([0.15, 0.55])
    volumes = summary.hypervolumes(faceted)
    volumes = volumes[(volumes["x"] == FORGET) & (volumes["y"] == RETAIN)].set_index("facet")
    # reference point per facet: the worst forget (the target's) and the worst retain (0.5) of that facet
    assert volumes.loc["forget_size=1", "reference"] == pytest.approx((0.9, 0.5))
    assert volumes.loc["forget_size=1", "hypervolume"] == pytest.approx((0.9 - 0.4) * (0.9 - 0.5))
    assert volumes.loc["forget_size=2", "hypervolume"] == pytest.approx((0.8 - 0.4) * (0.9 - 0.5))


def _front_svg(df, x, y, size=None):
    """The report's front figure of ``df`` (one facet combination), parsed."""
    import xml.etree.ElementTree as ET

    from reports import html

    text = html._front(df, x, y, size, "")
    return ET.fromstring(text[text.index("<svg"):text.index("</svg>") + 6])


def _texts(root) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]


def _titles(root, role: str) -> list[str]:
    return ["".join(t.itertext()) for e in root.iter() if e.get("class") == role
            for t in e.iter("{http://www.w3.org/2000/svg}title")]


def test_facets_split_the_figures(faceted):
    groups = facet_groups(faceted)
    assert [values for values, _ in groups] == [{"forget_size": 1}, {"forget_size": 2}]
    assert all(set(group["forget_size"]) == {values["forget_size"]} for values, group in groups)
    assert all(sorted(group.loc[group["role"] != "trial", "role"]) == ["oracle", "target"] for _, group in groups)
    for values, group in groups:
        root = _front_svg(group, FORGET, RETAIN)
        assert any(f"forget_size={values['forget_size']}" in t for t in _texts(root))
        oracle = group[group["role"] == "oracle"].iloc[0]
        assert any(f"{FORGET} = {oracle[FORGET]:.4g}" in t for t in _titles(root, "ref"))
        assert "forget_size=" in figures.trajectory_figure(group).get_suptitle()
    with pytest.raises(ValueError, match="facet"):
        figures.problem(faceted)


def test_front_figure_draws_each_methods_front_and_the_references(sweep):
    df = reports.load(sweep)
    front_decl = reports.declaration(df)["fronts"][0]
    x, y = front_decl["x"], front_decl["y"]
    root = _front_svg(df, x, y)
    lines = root.iter("{http://www.w3.org/2000/svg}polyline")
    fronts = {e.get("data-method") for e in lines if e.get("class") == "front"}
    assert fronts == {"undial", "unilogit"}
    points = configurations(figures.ok_trials(df)).dropna(subset=[x, y])
    assert len([e for e in root.iter() if e.get("class") == "point"]) == len(points)
    references = " ".join(_titles(root, "ref"))
    assert "target" in references and "oracle" in references
    assert "×100" not in " ".join(_texts(root))
    assert any("×100" in t for t in _texts(_front_svg(df, x, "privleak")))  # declared on the ×100 scale


def test_kl_names_follow_the_convention():
    assert figures.parse_kl("softlabel_kl_oracle_undial_g10_forget_facts") == {
        "metric": "softlabel_kl_oracle_undial_g10_forget_facts", "softlabel": True, "a": "oracle", "b": "undial_g10",
        "tokens": "forget_facts"}
    assert figures.parse_kl("kl_model_oracle_retain") == {
        "metric": "kl_model_oracle_retain", "softlabel": False, "a": "model", "b": "oracle", "tokens": "retain"}
    assert figures.parse_kl("softlabel_kl_x_oracle_forget")["a"] == "x"
    assert figures.parse_kl("kl_a_b_forget") is None and figures.parse_kl("kl_oracle_model_elsewhere") is None


def test_kl_panels_hold_real_values(sweep):
    df = reports.load(sweep)
    target = df[df["role"] == "target"].iloc[0]
    unilogit = figures.ok_trials(df)[lambda d: d["method"] == "unilogit"]
    assert figures.softlabels(df) == ["unilogit", *(f"undial_g{g}" for g in GAMMAS)]
    # (a) bars: Unilogit at start and during training, UnDIAL per γ; both directions, each token set
    fig = figures.softlabel_kl_figure(df)
    assert [ax.get_title().rsplit(" ", 1)[1] for ax in fig.axes] == ["forget", "forget_facts"]
    for ax, tokens in zip(fig.axes, ("forget", "forget_facts")):
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
    # (c) every configuration's model KL, and the target as baseline: both directions × three token sets
    fig = figures.model_kl_figure(df)
    expected = [f"kl_{a}_{b}_{tokens}" for a, b in (("oracle", "model"), ("model", "oracle"))
                for tokens in ("forget", "forget_facts", "retain")]
    assert len(fig.axes) == len(expected)
    for ax, metric in zip(fig.axes, expected):
        baseline = next(line for line in ax.lines if line.get_label() == "target (baseline)")
        assert baseline.get_ydata()[0] == target[metric]
        curves = [line for line in ax.lines if line.get_xdata()[-1] == 2]
        assert len(curves) == 4 and all(line.get_ydata()[0] == target[metric] for line in curves)


def test_kl_panels_follow_the_declared_roles(tmp_path):
    """Only metrics of role ``kl`` count, whatever their names; none → no KL figure in the report."""
    metrics = declaration()["metrics"]
    for name in metrics:
        if name.startswith("kl_") or name.endswith("_forget_facts"):
            metrics[name]["role"] = "utility"
    df = reports.load(make_sweep(tmp_path, "roles", benchmark=declaration(metrics=metrics)))
    assert figures.model_kl_metrics(df) == []
    assert [ax.get_title().rsplit(" ", 1)[1] for ax in figures.softlabel_kl_figure(df).axes] == ["forget"]
    text = reports.render(df)
    assert "alt='kl_c figure'" not in text and text.count("alt='kl_a figure'") == 1
    for metric in metrics:
        if metrics[metric]["role"] == "kl":
            metrics[metric]["role"] = "utility"
    df = reports.load(make_sweep(tmp_path, "none", benchmark=declaration(metrics=metrics)))
    assert figures.softlabels(df) == [] and "alt='kl_" not in reports.render(df)


def test_trajectories_default_to_the_declared_ones(tmp_path):
    df = reports.load(make_sweep(tmp_path, benchmark=declaration(trajectories=["forget_fb_rouge_l_recall", UTILITY])))
    titles = [ax.get_title() for ax in figures.trajectory_figure(df).axes]
    assert titles == [f"{m}: {metric}" for metric in ("forget_fb_rouge_l_recall", UTILITY)
                      for m in ("undial", "unilogit")]


def test_a_record_without_a_declaration_still_reports(tmp_path):
    df = reports.load(make_sweep(tmp_path, "old", benchmark=None))
    assert reports.declaration(df)["declared"] is False and reports.declaration(df)["fronts"] == []
    assert summary.select(df)["note"].str.contains("declares no selection rule").all()
    assert summary.hypervolumes(df).empty
    assert figures.softlabels(df) == [] and figures.model_kl_metrics(df) == []
    for fig in (figures.trajectory_figure(df), figures.softlabel_kl_figure(df), figures.model_kl_figure(df)):
        assert fig.axes
    text = reports.render(df)
    assert "declares no selection rule" in text and "data:image/png" not in text and "No declared metric" in text


def test_figures_tolerate_missing_metrics_and_no_finished_trial(tmp_path):
    sweep = make_sweep(tmp_path, trials=[{"method": "unilogit", "lr": 1e-3, "seed": 0, "fail": "no-result"}])
    df = reports.load(sweep)
    for fig in (figures.trajectory_figure(df), figures.softlabel_kl_figure(df),
                figures.softlabel_kl_progress_figure(df), figures.model_kl_figure(df)):
        assert fig.axes
    assert not [e for e in _front_svg(df, FORGET, RETAIN, size=UTILITY).iter() if e.get("class") == "point"]
    assert summary.select(df)["note"].str.contains("no finished configuration").all()
    with pytest.raises(ValueError, match="one sweep"):
        figures.trajectory_figure(pd.concat([df, df.assign(sweep="other")]))


def test_demo_summary_reads_the_declaration(sweep, capsys):
    from sweeps.demo import print_summary

    df = reports.load(sweep)
    print_summary(df, summary)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["method", "forget", "retain"]
    rows = {line.split()[0]: line.split() for line in lines[1:3]}
    chosen = summary.select(df).set_index("method")
    volumes = summary.hypervolumes(df)
    volumes = volumes[(volumes["x"] == FORGET) & (volumes["y"] == RETAIN)].set_index("method")["hypervolume"]
    final = df[(df["role"] == "trial") & df["final"].eq(True)]
    for method, kl in (("unilogit", final.loc[final["method"] == "unilogit",
                                              "softlabel_kl_oracle_unilogit_forget_facts"].mean()),
                       ("undial", 2.0)):  # UnDIAL: the first γ's fixed label, 1 + γ index + 1 on the facts
        assert rows[method][1:] == [f"{chosen.loc[method, FORGET]:.3f}", f"{chosen.loc[method, RETAIN]:.3f}",
                                    f"{volumes[method]:.3f}", f"{kl:.3f}"]
    assert FORGET in lines[3] and RETAIN in lines[3]
    fronts = lines.index(f"fronts compared ({RETAIN} vs {FORGET}), hypervolume a − b [95 % interval]:")
    assert lines[fronts + 1].split()[:3] == ["undial", "−", "unilogit"]
    assert lines[fronts + 1].endswith(("undial ahead", "unilogit ahead", "indistinguishable at this size"))
    assert "the seed paper's claims, difference [95 % interval]:" in lines


def test_reports_name_no_benchmark_metric():
    """Everything benchmark-specific comes from the declaration in the record."""
    literals = ("rouge_l", "knowmem", "verbmem", "rwku", "muse", "jsonl_", "mmlu", "forget_qa", "retain_qa",
                "utility_qa", "privleak", "min_k", "kl_oracle_model")
    for path in sorted((ROOT / "reports").glob("*.py")):
        text = path.read_text().lower()
        found = [literal for literal in literals if literal in text]
        assert not found, (path.name, found)


def test_cli_writes_one_report_of_several_sweeps(sweep, tmp_path, capsys):
    from sweeps import cli

    other = make_sweep(tmp_path / "more", "second", trials=DEFAULT_TRIALS[-1:])  # one running trial
    out = tmp_path / "report.html"
    assert cli.main(["report", str(sweep), str(other), "-o", str(out)]) == 0
    assert "2 sweep(s), 11 trial(s), 5 not finished" in capsys.readouterr().out
    text = out.read_text()
    assert "Sweep tiny" in text and "Sweep second" in text
    assert text.count("data:image/png;base64,") == 2 * 4  # trajectories and KL (a)-(c); the second sweep:
    assert text.count(FRONT_SVG) == 2 * 3  # references only, "no finished trial"
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
