"""Preparation of target and oracle on the tiny preset, their evaluation, and the cache."""

import json

import pytest
import torch

import benchmarks
from benchmarks import prepare as prep
from benchmarks.common import EvalConfig, without_probes
from benchmarks.synthetic import evaluate as ev
from unlearn import data, models

PARAMS = dict(seed=1, people=20, forget_fraction=0.2, facts=4, bios=3)
RECIPE = prep.Recipe(lr=3e-3, max_epochs=40, micro_batch=8, stop_recall=0.95)
CONFIG = EvalConfig(batch_size=16, max_new_tokens=12, verbatim_tokens=24, softlabel_gammas=(3.0, 10.0))


@pytest.fixture(scope="module")
def prepared(tiny_prepared, unlearn_cache):
    """The tiny spec's target and oracle (``sweeps/specs/tiny.yaml``: the parameters and recipe
    here), prepared once for the session."""
    cache = unlearn_cache
    benchmark = benchmarks.get("synthetic", **PARAMS)
    result = tiny_prepared
    assert result.target.parent.name == prep.cache_key("tiny", benchmark, RECIPE)
    target, tokenizer = models.load_model(str(result.target))
    oracle, _ = models.load_model(str(result.oracle))
    collate = data.Collator(tokenizer, max_length=256)
    refs = ev.references(target, oracle, tokenizer, collate, result.data, CONFIG)
    return dict(cache=cache, benchmark=benchmark, result=result, target=target, oracle=oracle, tokenizer=tokenizer,
                collate=collate, refs=refs)


def test_target_knows_the_forget_people_and_the_oracle_does_not(prepared):
    meta = prepared["result"].meta
    assert meta["target"]["forget_recall"] >= 0.8 and meta["oracle"]["forget_recall"] <= 0.3
    for role in ("target", "oracle"):  # each trained until its check probes were recalled (or ran out of epochs)
        assert set(meta[role]) == {"epochs", "trained_recall", "forget_recall", "examples"}
        assert meta[role]["trained_recall"] >= RECIPE.stop_recall or meta[role]["epochs"] == RECIPE.max_epochs
    data_ = prepared["result"].data
    assert meta["target"]["examples"] == len(data_.train_examples(with_forget=True, utility=True))
    assert meta["oracle"]["examples"] == len(data_.train_examples(with_forget=False, utility=True))
    assert (meta["benchmark"], meta["benchmark_key"]) == ("synthetic", prepared["benchmark"].key())
    base = prepared["refs"].baseline
    assert base["forget_qa_rouge_l_recall"] >= 0.8


def test_retain_and_neighbour_knowledge_is_in_both_models(prepared):
    oracle = ev.evaluate(prepared["oracle"], prepared["tokenizer"], prepared["collate"], prepared["result"].data,
                         prepared["refs"], CONFIG, parts=("generation",))
    for scores in (prepared["refs"].baseline, oracle):
        assert scores["retain_qa_rouge_l_recall"] >= 0.7
        assert scores["neighbor_qa_rouge_l_recall"] >= 0.7
    assert oracle["forget_qa_rouge_l_recall"] <= 0.3


def test_oracle_kl_to_itself_is_zero_and_the_target_is_far(prepared):
    own = ev.evaluate(prepared["oracle"], prepared["tokenizer"], prepared["collate"], prepared["result"].data,
                      prepared["refs"], CONFIG, parts=("kl", "mia"))
    assert abs(own["kl_oracle_model_forget"]) < 1e-6 and abs(own["kl_model_oracle_retain"]) < 1e-6
    assert abs(own["privleak"]) < 1e-9
    base = prepared["refs"].baseline
    assert base["kl_oracle_model_forget"] > 0.1
    assert base["kl_oracle_model_forget_facts"] > base["kl_oracle_model_forget"]  # the facts are what differ


def test_memorised_forget_set_gives_privleak_near_minus_100(prepared):
    base = prepared["refs"].baseline
    assert base["mia_min_k_auc"] <= 0.1 and base["privleak"] <= -80


def test_every_declared_metric_is_computed_with_a_stderr(prepared):
    base = prepared["refs"].baseline
    declared = {m.name for m in prepared["benchmark"].metrics(CONFIG)}
    assert declared <= set(base)
    # the soft-label analysis covers exactly the configured UnDIAL γ
    assert {k for k in base if "undial_g" in k and not k.endswith("_stderr")} == {
        f"softlabel_kl_{a}_{b}_{t}" for g in ("3", "10")
        for a, b in (("oracle", f"undial_g{g}"), (f"undial_g{g}", "oracle"))
        for t in ("forget", "forget_facts")}
    assert all(f"{name}_stderr" in base for name in declared)
    assert all(isinstance(v, float) for v in without_probes(base).values())


def test_second_prepare_reuses_the_cache(prepared):
    said = []
    again = prep.prepare("tiny", prepared["benchmark"], RECIPE, cache=prepared["cache"], progress=said.append)
    assert said and said[0].startswith("reusing") and again.meta == prepared["result"].meta


def test_damaged_cache_is_rebuilt_never_loaded(prepared, tmp_path, monkeypatch):
    import shutil

    cache = tmp_path / "cache"
    root = cache / "prepared" / prep.cache_key("tiny", prepared["benchmark"], RECIPE)
    shutil.copytree(prepared["result"].target.parent, root)
    assert prep.verify(root) is None
    weights = root / "oracle" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    assert prep.verify(root) == "oracle/model.safetensors does not match its recorded SHA-256"
    built = []

    def fake_build(base, benchmark, recipe, data_, out, progress):
        built.append(out)
        (out / "target").mkdir(parents=True)
        (out / "oracle").mkdir()
        return {"target": {"forget_recall": 1.0}, "oracle": {"forget_recall": 0.0}}

    monkeypatch.setattr(prep, "_build", fake_build)
    said = []
    prep.prepare("tiny", prepared["benchmark"], RECIPE, cache=cache, progress=said.append)
    assert built and "damaged" in said[0] and prep.verify(root) is None
    assert not weights.exists()  # the corrupted file is gone, not reused


def test_cli_eval_writes_json(prepared, tmp_path, capsys):
    from sweeps import cli

    out = tmp_path / "m.json"
    args = ["eval", "--model", str(prepared["result"].target), "--cache", str(prepared["cache"]),
            "--max-probes", "4", "--out", str(out)] + [f"--param={k}={v}" for k, v in PARAMS.items()]
    assert cli.main(args) == 0
    saved = json.loads(out.read_text())
    assert "forget_qa_rouge_l_recall" in saved["values"] and saved["directions"]["privleak"] == 0.0
    assert "forget_qa_rouge_l_recall" in capsys.readouterr().out


def test_references_are_reusable_values(prepared, tmp_path):
    path = tmp_path / "refs.pt"
    torch.save(prepared["refs"], path)
    loaded = torch.load(path, weights_only=False)
    assert torch.equal(loaded.oracle_forget, prepared["refs"].oracle_forget)


@pytest.mark.parametrize("argv,message", [
    (["eval", "--model", "./no-such-model"], "model path './no-such-model' does not exist"),
    (["eval", "--model", "x", "--benchmark", "muse-newz"],
     "unknown benchmark 'muse-newz'; known: jsonl, muse, rwku, synthetic"),
    (["prepare", "synthetic", "--base-model", "tiny", "--param", "people=2"], "synthetic.people must be"),
    (["prepare", "synthetic", "--base-model", "tiny", "--lr", "-1"], "recipe.lr must be a number > 0"),
    (["prepare", "synthetic", "--base-model", "tiny", "--param", "people"], "--param expects key=value"),
])
def test_cli_bad_input_is_one_line_before_any_compute(argv, message, tmp_path):
    from sweeps import cli

    with pytest.raises(SystemExit) as error:
        cli.main(argv + ["--cache", str(tmp_path)])
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("name, params", [("muse", {}), ("rwku", {})])
def test_benchmarks_with_their_own_models_cannot_prepare(name, params, tmp_path):
    benchmark = benchmarks.get(name, **params)
    assert not benchmark.declared.can_prepare
    with pytest.raises(ValueError, match=f"benchmark '{name}' cannot prepare a target and an oracle") as error:
        prep.check_can_prepare(benchmark)
    assert "\n" not in str(error.value) and "model.base" in str(error.value)
    with pytest.raises(ValueError, match="cannot prepare"):
        prep.prepare("tiny", benchmark, RECIPE, cache=tmp_path, progress=lambda m: None)
    assert not any(tmp_path.iterdir())  # refused before any data is fetched or written


def test_preparable_benchmarks_pass_the_check(tmp_path):
    for benchmark in (benchmarks.get("synthetic", **PARAMS), benchmarks.get("jsonl", path=str(tmp_path))):
        assert benchmark.declared.can_prepare
        prep.check_can_prepare(benchmark)  # no error


def test_cache_key_follows_base_benchmark_and_recipe():
    benchmark = benchmarks.get("synthetic", **PARAMS)
    key = prep.cache_key("tiny", benchmark, RECIPE)
    assert key == prep.cache_key("tiny", benchmarks.get("synthetic", **PARAMS), prep.Recipe(**vars(RECIPE)))
    assert key != prep.cache_key("tiny", benchmarks.get("synthetic", **dict(PARAMS, seed=2)), RECIPE)
    other = prep.Recipe(lr=1e-3, max_epochs=40, micro_batch=8, stop_recall=0.95)
    assert key != prep.cache_key("tiny", benchmark, other)
    assert key != prep.cache_key("other-model", benchmark, RECIPE)


def test_a_jsonl_benchmark_is_prepared_like_the_synthetic_one(tmp_path):
    """The generic preparation on the bring-your-own fixture: the target learns the forget seller's
    listings, the oracle only the others'; the cache key ignores evaluation-only parameters."""
    from pathlib import Path

    source = Path(__file__).parent / "fixtures" / "byo"
    benchmark = benchmarks.get("jsonl", path=str(source), max_new_tokens=16)
    recipe = prep.Recipe(lr=3e-3, max_epochs=30, micro_batch=8, stop_recall=0.9)
    result = prep.prepare("tiny", benchmark, recipe, cache=tmp_path, progress=lambda m: None)
    meta, jsonl_data = result.meta, result.data
    assert (meta["benchmark"], meta["benchmark_key"]) == ("jsonl", benchmark.key())
    # from scratch, both learn the multiple-choice answers too: 6 + 8 texts, 2 QA pairs, 3 MC answers
    assert meta["target"]["examples"] == 6 + 8 + 2 + 3 == len(jsonl_data.train_examples(with_forget=True, utility=True))
    assert meta["oracle"]["examples"] == 8 + 1 + 3 == len(jsonl_data.train_examples(with_forget=False, utility=True))
    assert meta["target"]["forget_recall"] >= 0.8 and meta["oracle"]["forget_recall"] <= 0.3

    target, tokenizer = models.load_model(str(result.target))
    oracle, _ = models.load_model(str(result.oracle))
    collate = data.Collator(tokenizer, max_length=256)
    config = EvalConfig(batch_size=8)
    scores = {role: benchmark.evaluate(model.eval(), tokenizer, collate, jsonl_data, None, config, ("generation",))
              for role, model in (("target", target), ("oracle", oracle))}
    assert scores["target"]["forget_completion_rouge_l_recall"] >= 0.8
    assert scores["oracle"]["forget_completion_rouge_l_recall"] <= 0.3
    assert min(s["neighbor_completion_rouge_l_recall"] for s in scores.values()) >= 0.5

    said = []
    shorter = benchmarks.get("jsonl", path=str(source), max_new_tokens=8)  # evaluation only: same preparation
    again = prep.prepare("tiny", shorter, recipe, cache=tmp_path, progress=said.append)
    assert said[0].startswith("reusing") and again.target == result.target
