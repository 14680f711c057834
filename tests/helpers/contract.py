"""The benchmark contract as checks (used by ``tests/test_benchmark_contract.py`` for every registered
benchmark and by the test of the example in ``docs/adding-a-benchmark.md``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import benchmarks
from benchmarks import common
from benchmarks.common import PROBES, EvalConfig
from benchmarks.spec import ROLES, SCALES, declaration
from unlearn.data import Collator
from unlearn.models import TinyConfig, load_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PARAMS = {  # every registered benchmark's parameters on its committed fixture
    "synthetic": {"seed": 1, "people": 8, "forget_fraction": 0.2, "facts": 3, "bios": 1},
    "muse": {"source": str(FIXTURES / "muse_news")},
    "rwku": {"source": str(FIXTURES / "rwku"), "targets": 1},
    "jsonl": {"path": str(FIXTURES / "byo")},
    "tofu": {"source": str(FIXTURES / "tofu"), "split": "forget01", "chat": False, "max_new_tokens": 8},
    "wmdp": {"source": str(FIXTURES / "wmdp" / "wmdp"), "mmlu_source": str(FIXTURES / "wmdp" / "mmlu"),
             "mmlu_subjects": ["astronomy", "high_school_geography"], "corpus": str(FIXTURES / "wmdp" / "corpus")},
}
CONFIG = EvalConfig(batch_size=8, max_new_tokens=8, verbatim_tokens=8, kl_max_tokens=256, softlabel_gammas=(10.0,))
TINY = TinyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64)


def check_declaration(benchmark) -> None:
    """Every metric has a direction, a role and a scale; the declaration names only declared
    metrics and is plain JSON."""
    metrics = benchmark.metrics(CONFIG)
    names = [m.name for m in metrics]
    assert len(names) == len(set(names)), "a metric is declared twice"
    for m in metrics:
        assert m.direction in ("min", "max") or isinstance(m.direction, (int, float)), m
        assert m.role in ROLES and m.scale in SCALES and m.description, m
        assert not m.name.endswith("_stderr"), m
    record = json.loads(json.dumps(declaration(benchmark, metrics)))
    used = {f[k] for f in record["fronts"] for k in ("x", "y", "size") if f[k]} | set(record["trajectories"])
    used |= {record["selection"]["forget"], record["selection"]["retain"], *record["selection"]["floors"]}
    assert used <= set(names), used - set(names)
    assert record["fronts"] and record["trajectories"]
    assert isinstance(record["needs_oracle"], bool) and isinstance(benchmark.declared.can_prepare, bool)


def check_bad_parameter(name: str, params: dict) -> None:
    with pytest.raises(ValueError) as error:
        benchmarks.get(name, **params, no_such_parameter=1)
    message = str(error.value)
    assert "no_such_parameter" in message and "\n" not in message, message


def check_materialize(benchmark, cache: Path, monkeypatch) -> object:
    """Idempotent; a failure half-way through leaves nothing behind (and the failure is injected
    into the one cache writer every benchmark uses)."""
    original, calls = common.complete, []

    def failing(root, write, *args):
        def write_then_fail(tmp):
            write(tmp)
            calls.append(tmp)
            raise OSError("disk full (injected)")
        return original(root, write_then_fail, *args)

    broken = cache / "broken"
    monkeypatch.setattr(common, "complete", failing)
    with pytest.raises(OSError, match="injected"):
        benchmark.materialize(broken)
    monkeypatch.setattr(common, "complete", original)
    assert calls, "materialize must write through benchmarks.common.complete"
    assert not any(broken.iterdir()), f"left behind: {list(broken.iterdir())}"

    good = cache / "good"
    data = benchmark.materialize(good)
    before = {p: p.stat().st_mtime_ns for p in good.rglob("*")}
    again = benchmark.materialize(good)
    assert again.root == data.root and {p: p.stat().st_mtime_ns for p in good.rglob("*")} == before
    assert [p.name for p in good.iterdir()] == [data.root.name]  # no temporary directory left
    assert benchmark.read(data.root).forget_examples() == data.forget_examples() != []
    return data


def tiny_models(data):
    """A target and an oracle: two tiny models with one tokenizer trained on the benchmark's texts."""
    texts = [e.get("text") or f"{e['question']} {e['answer']}" for e in data.forget_examples() + data.retain_examples()]
    target, tokenizer = load_model("tiny", texts=texts, tiny=TINY)
    oracle, _ = load_model("tiny", texts=texts, tiny=TinyConfig(**{**TINY.__dict__, "seed": 1}))
    return target.eval(), oracle.eval(), tokenizer


def check_evaluation(benchmark, data) -> dict:
    """Every declared metric is computed from the model's outputs, with its standard error."""
    target, oracle, tokenizer = tiny_models(data)
    part = data.for_target(data.targets[0]) if getattr(data, "targets", None) else data
    collate = Collator(tokenizer, max_length=128, chat_template=part.chat)
    refs = benchmark.references(target, oracle, tokenizer, collate, part, CONFIG)
    assert set(refs.baseline) == set(benchmark.evaluate(target, tokenizer, collate, part, refs, CONFIG, CONFIG.parts))
    values = benchmark.evaluate(oracle, tokenizer, collate, part, refs, CONFIG, CONFIG.parts)
    declared = {m.name for m in benchmark.metrics(CONFIG)}
    computed = {k for k in values if not k.endswith(("_stderr", PROBES))}
    assert declared == computed, (sorted(declared - computed), sorted(computed - declared))
    per_probe = {k.removesuffix(PROBES): v for k, v in values.items() if k.endswith(PROBES)}
    assert per_probe and set(per_probe) <= declared, sorted(set(per_probe) - declared)
    for name, scores in per_probe.items():  # the recorded scores are those the value averages
        assert len(scores) >= 1 and math.isclose(sum(scores) / len(scores), values[name], rel_tol=1e-5, abs_tol=1e-5)
    for name in computed:
        assert f"{name}_stderr" in values, name
        assert isinstance(values[name], float) and (math.isfinite(values[name]) or name.startswith("privleak")), name
        assert not values[f"{name}_stderr"] < 0, name
    if benchmark.declared.can_prepare:
        probes = part.check_probes(with_forget=True)
        recall = benchmark.recall(target, tokenizer, collate, part, probes, CONFIG)
        assert len(recall) == len(probes) > 0 and all(0.0 <= r <= 1.0 for r in recall)
        assert (part.train_examples(with_forget=False, utility=False)
                != part.train_examples(with_forget=True, utility=False))
        assert part.forget_probes() and part.corpus_texts()
    return values
