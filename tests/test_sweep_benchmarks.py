"""A sweep on RWKU (the committed fixture, a tiny model as the target, no oracle): every
configuration runs once per unlearning target (``subject``), every trial is evaluated with RWKU's
protocol, and the report averages over the targets with their spread. Local cluster on loopback."""

import math
import tempfile
from pathlib import Path

import pytest

from sweeps import cluster, spec as specs
from sweeps.results import read_rows

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "rwku"


@pytest.fixture(scope="module")
def rwku_sweep(tmp_path_factory, unlearn_cache):
    import ray

    from benchmarks import rwku
    from sweeps.run import run_sweep
    from unlearn import models

    texts = [r["text"] for r in rwku.load(FIXTURE, "train_positive_llama3")]
    model, tokenizer = models.load_model("tiny", texts=texts, tiny=models.TinyConfig(seed=0))
    target = models.save_model(model, tokenizer, tmp_path_factory.mktemp("tiny-target"))
    spec = specs.from_dict({
        "name": "rwku-tiny",
        "model": {"target": str(target)},
        "benchmark": {"name": "rwku", "params": {"source": str(FIXTURE), "targets": 2, "utility": ["mmlu", "triviaqa"]}},
        "methods": {"ga": {"lr": {"grid": [1.0e-3, 3.0e-3]}}},
        "training": {"epochs": 2, "micro_batch": 2, "seeds": [0], "max_length": 128},
        "failure": {"max_retries": 0, "checkpoint_every_epoch": False},
        "eval": {"every_epoch": ["generation"], "final": ["generation", "mia", "utility"], "batch_size": 8},
        "scaling": {"workers": 1, "zero_stage": 2},
    })
    storage = tmp_path_factory.mktemp("runs")
    cluster.connect(num_cpus=2, temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    said = []
    sweep_dir = run_sweep(spec, storage=str(storage), progress=said.append)
    yield {"dir": sweep_dir, "said": said}
    ray.shutdown()


def test_every_configuration_runs_once_per_target(rwku_sweep):
    trials = sorted((rwku_sweep["dir"] / "ga").glob("run_trial_*"))
    assert len(trials) == 4, rwku_sweep["said"]  # 2 learning rates × 2 targets
    seen = set()
    for trial in trials:
        rows = read_rows(trial)
        assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["final"] is True and rows[-1]["status"] == "ok"
        final = rows[-1]
        for name in ("rwku_forget_fb", "rwku_forget_qa", "rwku_forget_aa", "rwku_forget_all", "rwku_neighbor_all",
                     "rwku_mia_fm_loss", "rwku_mmlu", "rwku_triviaqa"):
            assert math.isfinite(final[name]), name
        params = __import__("json").loads((trial / "params.json").read_text())
        seen.add((params["lr"], params["subject"]))
    assert {s for _, s in seen} == {"Stephen King", "Bruce Lee"} and len(seen) == 4


def test_reference_rows_per_target_and_no_oracle(rwku_sweep):
    import json

    rows = json.loads((rwku_sweep["dir"] / "reference_rows.json").read_text())["rows"]
    assert sorted((r["role"], r["subject"]) for r in rows) == [("target", "Bruce Lee"), ("target", "Stephen King")]


def test_report_averages_over_targets(rwku_sweep):
    import reports
    from reports.pareto import configurations

    df = reports.load([rwku_sweep["dir"]])
    trials = df[df["role"] == "trial"]
    table = configurations(df)
    table = table[table["epoch"] == 2]
    assert len(table) == 2 and set(table["n_subjects"]) == {2}  # one row per learning rate
    for _, row in table.iterrows():
        values = trials[(trials["lr"] == row["lr"]) & (trials["epoch"] == 2)]["rwku_forget_all"]
        assert row["rwku_forget_all"] == pytest.approx(values.mean())
        assert row["rwku_forget_all_std"] == pytest.approx(values.std(ddof=1), nan_ok=True)
    out = rwku_sweep["dir"] / "report.html"
    reports.render(df, out)
    assert out.read_text().count("alt='front figure'") == 2  # forget All vs neighbour All, and vs MMLU
