"""Sweeps on the real benchmarks' committed fixtures, in one local Ray cluster on loopback: MUSE
(a tiny target, no oracle), RWKU (every configuration once per unlearning target) and a user's own
JSONL data through ``unlearn sweep`` with ``model.base`` (target and oracle prepared by the service,
a grid over a benchmark parameter) and TOFU with its forget split as a grid (a retain model prepared per
split). Each ends in a report whose summary, fronts, trajectories and (with an oracle) KL panels follow
from what the benchmark declares."""

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from helpers.browser import check_opens, chromium  # noqa: F401  (the browser fixture)
from helpers.report_sweeps import FRONT_SVG
from reports.record import read_rows
from sweeps import spec as specs

pytestmark = [pytest.mark.ray, pytest.mark.browser, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TRAINING = {"epochs": 2, "micro_batch": 2, "seeds": [0], "max_length": 128}
FAILURE = {"max_retries": 1, "checkpoint_every_epoch": False}  # a worker group lost to the loaded machine: once more
# Two one-worker trials at once on the 2-CPU cluster (a trial actor takes 0.1 CPU).
TWO_AT_ONCE = {"scaling": {"workers": 1, "zero_stage": 2, "cpus_per_worker": 0.9}, "max_concurrent_trials": 2}


def _tiny_target(texts: list[str], where: Path) -> Path:
    from unlearn import models

    model, tokenizer = models.load_model("tiny", texts=texts, tiny=models.TinyConfig(seed=0))
    return models.save_model(model, tokenizer, where)


def _sweep(spec: dict, storage: Path) -> Path:
    from sweeps.run import run_sweep

    outcome = run_sweep(specs.from_dict(spec), storage=str(storage), progress=lambda _: None)
    assert outcome.finished > 0 and not outcome.failed, outcome
    return outcome.sweep_dir


def _report(sweep_dir: Path):
    import reports

    df = reports.load([sweep_dir])
    out = sweep_dir / "report.html"
    reports.render(df, out)
    return df, out.read_text(), out


@pytest.fixture(scope="module")
def rwku_sweep(tmp_path_factory, unlearn_cache, ray_cluster):
    from benchmarks import rwku

    texts = [r["text"] for r in rwku.load(FIXTURES / "rwku", "train_positive_llama3")]
    target = _tiny_target(texts, tmp_path_factory.mktemp("rwku-target"))
    sweep_dir = _sweep({
        "name": "rwku-tiny", "model": {"target": str(target)},
        "benchmark": {"name": "rwku", "params": {"source": str(FIXTURES / "rwku"), "targets": 2,
                                                 "utility": ["mmlu", "triviaqa"]}},
        "methods": {"ga": {"lr": 3.0e-3}}, "training": TRAINING, "failure": FAILURE,
        "eval": {"every_epoch": ["generation"], "final": ["generation", "mia", "utility"], "batch_size": 8},
        **TWO_AT_ONCE,
    }, tmp_path_factory.mktemp("runs"))
    return sweep_dir


def _muse_spec(target: Path, name: str, methods: dict) -> dict:
    return {
        "name": name, "model": {"target": str(target)},
        "benchmark": {"name": "muse", "params": {"source": str(FIXTURES / "muse_news")}},
        "methods": methods, "training": TRAINING, "failure": FAILURE,
        "eval": {"every_epoch": ["generation"], "final": ["generation", "verbmem", "mia"], "batch_size": 8},
        "scaling": {"workers": 1, "zero_stage": 2},
    }


@pytest.fixture(scope="module")
def muse_target(tmp_path_factory):
    texts = [json.loads(line)["text"] for split in ("forget", "retain1", "retain2", "holdout")
             for line in (FIXTURES / "muse_news" / "raw" / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    return _tiny_target(texts, tmp_path_factory.mktemp("muse-target"))


@pytest.fixture(scope="module")
def muse_sweep(tmp_path_factory, unlearn_cache, ray_cluster, muse_target):
    return _sweep(_muse_spec(muse_target, "muse-tiny", {"npo": {"lr": 3.0e-3}}), tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def byo_sweep(tmp_path_factory, unlearn_cache, ray_cluster):
    """``unlearn sweep`` then ``unlearn report`` on the JSONL fixture, preparing from ``base: tiny``,
    with ``max_new_tokens`` swept as a grid."""
    from sweeps import cli

    root = tmp_path_factory.mktemp("byo")
    spec = {
        "name": "byo-tiny",
        "model": {"base": "tiny", "prepare": {"lr": 3.0e-3, "max_epochs": 12, "micro_batch": 8, "stop_recall": 0.6,
                                              "max_length": 128}},
        "benchmark": {"name": "jsonl", "params": {"path": str(FIXTURES / "byo"), "max_new_tokens": {"grid": [8, 16]}}},
        "methods": {"gd": {"lr": 3.0e-3}}, "training": TRAINING, "failure": FAILURE,
        "eval": {"every_epoch": ["generation", "kl"], "final": ["generation", "utility", "mia", "kl"], "batch_size": 8},
        **TWO_AT_ONCE,
    }
    (root / "byo.yaml").write_text(yaml.safe_dump(spec))
    assert cli.main(["sweep", str(root / "byo.yaml"), "--storage", str(root / "runs")]) == 0
    report = root / "report.html"
    assert cli.main(["report", str(root / "runs" / "byo-tiny"), "-o", str(report)]) == 0
    return root / "runs" / "byo-tiny", report


@pytest.fixture(scope="module")
def tofu_sweep(tmp_path_factory, unlearn_cache, ray_cluster):
    """TOFU on its fixture with the forget split as a grid (forget01, forget05). Forget quality needs the
    retain model of each split: ``model.base: tiny`` makes the service prepare, per split, a target on
    the whole fixture and an oracle without that split's forget set (the retain model). One method,
    one epoch, two trials at once."""
    spec = {
        "name": "tofu-tiny",
        "model": {"base": "tiny", "prepare": {"lr": 3.0e-3, "max_epochs": 12, "micro_batch": 8, "stop_recall": 0.6,
                                              "max_length": 128}},
        "benchmark": {"name": "tofu", "params": {"source": str(FIXTURES / "tofu"), "chat": False, "max_new_tokens": 8,
                                                 "split": {"grid": ["forget01", "forget05"]}}},
        "methods": {"ga": {"lr": 3.0e-3}}, "training": {**TRAINING, "epochs": 1}, "failure": FAILURE,
        "eval": {"every_epoch": ["likelihood", "generation"], "final": ["likelihood", "generation", "mia"],
                 "batch_size": 8},
        **TWO_AT_ONCE,
    }
    return _sweep(spec, tmp_path_factory.mktemp("runs"))


def _check_report(df, text: str, fronts: int, *, kl: bool) -> None:
    """A summary with a selected configuration or the rule's stated reason, the declared fronts,
    a trajectory figure, and KL panels exactly when the benchmark has KL metrics."""
    summary = text[text.index("<h3>Summary</h3>"):text.index("<h3>Reference models</h3>")]
    assert "rule not applicable" not in summary
    assert re.search(r"\(epoch \d+; trials|no finished configuration", summary), summary[:2000]
    assert text.count(FRONT_SVG) == fronts
    assert text.count("alt='trajectory figure'") >= 1
    assert (text.count("alt='kl_c figure'") >= 1) == kl
    assert not df[df["role"] == "trial"].empty


def test_rwku_runs_every_configuration_once_per_target(rwku_sweep):
    trials = sorted((rwku_sweep / "ga").glob("run_trial_*"))
    assert len(trials) == 2  # one learning rate × 2 targets
    subjects = set()
    for trial in trials:
        rows = read_rows(trial)
        assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["final"] is True and rows[-1]["status"] == "ok"
        for name in ("forget_all_rouge_l_recall", "neighbor_all_rouge_l_recall", "mia_forget_loss",
                     "utility_mmlu_accuracy", "utility_triviaqa_f1"):
            assert math.isfinite(rows[-1][name]), name
        subjects.add(json.loads((trial / "params.json").read_text())["subject"])
    assert subjects == {"Stephen King", "Bruce Lee"}
    first, second = (json.loads((trial / "timing.json").read_text()) for trial in trials)
    assert first["started"] < second["ended"] and second["started"] < first["ended"]  # they ran at once
    record = json.loads((rwku_sweep / "reference_rows.json").read_text())
    assert sorted((r["role"], r["subject"]) for r in record["rows"]) == [("target", "Bruce Lee"),
                                                                          ("target", "Stephen King")]
    assert record["benchmark"]["average_over"] == ["subject"] and not record["benchmark"]["needs_oracle"]
    assert record["benchmark"]["protocol"] == "paper"  # the default, recorded with the results


def test_rwku_report_averages_over_targets_and_opens(rwku_sweep, chromium, tmp_path):  # noqa: F811
    from reports.pareto import configurations

    df, text, path = _report(rwku_sweep)
    table = configurations(df)
    final = table[table["epoch"] == 2]
    assert len(final) == 1 and set(final["n_subjects"]) == {2}
    values = df[(df["role"] == "trial") & (df["epoch"] == 2)]["forget_all_rouge_l_recall"]
    assert final["forget_all_rouge_l_recall"].iloc[0] == pytest.approx(values.mean())
    _check_report(df, text, fronts=2, kl=False)  # forget vs neighbour (the paper's Figure 3), vs MMLU
    assert set(df["protocol"]) == {"paper"} and "Benchmark rwku, protocol paper" in text  # on every row
    check_opens(chromium, path, tmp_path)


def test_muse_report_shows_knowmem_front(muse_sweep):
    df, text, _ = _report(muse_sweep)
    _check_report(df, text, fronts=2, kl=False)  # KnowMem forget vs retain (Figure 2), VerbMem vs KnowMem retain
    final = df[(df["role"] == "trial") & (df["epoch"] == 2)].iloc[0]
    assert 0 <= final["forget_knowmem_rouge_l_f1"] <= 100 and math.isfinite(final["privleak"])


def test_wmdp_sweep_on_the_fixture_draws_each_topic_against_mmlu(tmp_path_factory, unlearn_cache, ray_cluster):
    """RMU for one epoch on a tiny target, the WMDP fixture's questions and corpus."""
    from helpers.contract import PARAMS

    corpus = FIXTURES / "wmdp" / "corpus"
    texts = [json.loads(line)["text"] for name in ("forget", "retain")
             for line in (corpus / f"{name}.jsonl").read_text().splitlines()]
    target = _tiny_target(texts, tmp_path_factory.mktemp("wmdp-target"))
    sweep_dir = _sweep({
        "name": "wmdp-tiny", "model": {"target": str(target)},
        "benchmark": {"name": "wmdp", "params": PARAMS["wmdp"]},
        "methods": {"rmu": {"lr": 3.0e-3}}, "training": {**TRAINING, "epochs": 1}, "failure": FAILURE,
        "eval": {"every_epoch": ["likelihood", "utility"], "final": ["likelihood", "utility"], "batch_size": 8},
        "scaling": {"workers": 1, "zero_stage": 2},
    }, tmp_path_factory.mktemp("runs"))
    df, text, _ = _report(sweep_dir)
    _check_report(df, text, fronts=3, kl=False)  # bio, cyber and pooled accuracy against MMLU
    final = df[(df["role"] == "trial") & (df["epoch"] == 1)].iloc[0]
    for name in ("forget_bio_mc_accuracy", "forget_cyber_mc_accuracy", "forget_mc_accuracy", "utility_mmlu_accuracy"):
        assert 0 <= final[name] <= 1, name


def test_sweep_where_no_trial_finished_exits_non_zero(muse_target, ray_cluster, tmp_path, capsys):
    """Gradient ascent at an absurd learning rate: every trial diverges; the command names each
    failed trial with its error and exits 1."""
    from sweeps import cli

    spec = _muse_spec(muse_target, "muse-diverges", {"ga": {"lr": 1.0e30, "epochs": 1}})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert cli.main(["sweep", str(tmp_path / "spec.yaml"), "--storage", str(tmp_path / "runs")]) == 1
    out, err = capsys.readouterr()
    failed = [line for line in out.splitlines() if line.startswith("failed: ga trial ")]
    assert len(failed) == 1 and "diverged" in failed[0] and "non-finite loss" in failed[0], out
    assert "no trial finished (1 of 1 failed)" in err
    (trial,) = (tmp_path / "runs" / "muse-diverges" / "ga").glob("run_trial_*")
    last = read_rows(trial)[-1]
    assert last["status"] == "diverged" and last["epoch"] == 1 and "non-finite loss" in last["error"]


def test_byo_sweep_prepares_target_and_oracle_and_facets_by_the_grid(byo_sweep):
    import reports

    sweep_dir, report = byo_sweep
    environment = json.loads((sweep_dir / "environment.json").read_text())
    grid = environment["grid"]
    assert [g["label"] for g in grid] == [{"max_new_tokens": 8}, {"max_new_tokens": 16}]
    assert all(Path(g["target"]).name == "target" and Path(g["oracle"]).name == "oracle" for g in grid)
    assert grid[0]["target"] == grid[1]["target"]  # evaluation-only parameter: one preparation serves both
    record = json.loads((sweep_dir / "reference_rows.json").read_text())
    assert record["benchmark"]["facets"] == ["max_new_tokens"]
    assert sorted((r["role"], r["max_new_tokens"]) for r in record["rows"]) == [
        ("oracle", 8), ("oracle", 16), ("target", 8), ("target", 16)]
    params = sorted(json.loads(p.read_text())["max_new_tokens"] for p in sweep_dir.glob("gd/*/params.json"))
    assert params == [8, 16]
    df = reports.load([sweep_dir])
    text = report.read_text()
    _check_report(df, text, fronts=4, kl=True)  # 2 declared fronts × 2 grid points
    assert "max_new_tokens=8" in text and "max_new_tokens=16" in text
    assert df.loc[df["role"] == "trial", "kl_oracle_model_forget"].notna().all()


def test_benchmark_without_preparation_refuses_base_before_anything_is_written(tmp_path):
    import subprocess
    import sys

    spec = tmp_path / "rwku.yaml"
    spec.write_text(yaml.safe_dump({"name": "x", "model": {"base": "tiny"}, "methods": {"ga": {"lr": 1e-3}},
                                    "benchmark": {"name": "rwku", "params": {"source": str(FIXTURES / "rwku")}},
                                    "storage": str(tmp_path / "runs")}))
    run = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", str(spec)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0
    assert run.stderr.strip().count("\n") == 0 and "model.base" in run.stderr, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rwku.yaml"]


def test_tofu_sweep_grids_the_split_and_draws_forget_quality_against_model_utility(tofu_sweep):
    grid = json.loads((tofu_sweep / "environment.json").read_text())["grid"]
    assert [g["label"] for g in grid] == [{"split": "forget01"}, {"split": "forget05"}]
    assert grid[0]["oracle"] != grid[1]["oracle"]  # a retain model per split
    record = json.loads((tofu_sweep / "reference_rows.json").read_text())
    assert record["benchmark"]["fronts"] == [{"x": "forget_quality", "y": "model_utility", "size": None}]
    assert record["benchmark"]["facets"] == ["split"] and record["benchmark"]["needs_oracle"]
    oracles = [r for r in record["rows"] if r["role"] == "oracle"]
    assert sorted(r["split"] for r in oracles) == ["forget01", "forget05"]
    assert all(r["forget_quality"] == 1.0 for r in oracles)  # the retain model against itself
    df, text, _ = _report(tofu_sweep)
    _check_report(df, text, fronts=2, kl=False)  # forget quality vs model utility, once per split
    fronts = text.split(FRONT_SVG)[1:]
    assert all("forget_quality" in f.split("</svg>")[0] and "model_utility" in f.split("</svg>")[0] for f in fronts)
    assert "split=forget01" in text and "split=forget05" in text
    final = df[(df["role"] == "trial") & (df["epoch"] == 1)]
    assert len(final) == 2 and final["forget_quality"].between(0, 1).all()
    assert final["model_utility"].between(0, 1).all()
    assert final["mia_min_k_auc"].between(0, 1).all()  # privleak is NaN where a retain model's AUC is 0
