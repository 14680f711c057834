"""The sweep spec, search spaces, DeepSpeed config and resource planning (no Ray cluster)."""

import dataclasses
import json
import math
import pickle
from pathlib import Path

import pytest
import yaml

import benchmarks
from benchmarks import spec as benchmark_spec
from helpers.sweep_specs import BAD, TINY, apply, raw
from sweeps import cluster, space, trial
from sweeps import spec as specs
from sweeps.deepspeed_config import deepspeed_config
from sweeps.worker import objective_value


def test_tiny_spec_loads():
    spec = specs.load(TINY)
    assert set(spec.methods) == {"unilogit", "undial"} and spec.scaling.workers == 2
    assert space.grid_size(spec, "unilogit") == 2 and space.grid_size(spec, "undial") == 1


def test_scientific_notation_is_a_number(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(TINY.read_text().replace("lr: {grid: [1.0e-3, 3.0e-3]}", "lr: {grid: [1e-3, 3e-3]}"))
    assert specs.load(path).methods["unilogit"]["lr"] == {"grid": [0.001, 0.003]}


def test_primitives_map_to_tune():
    from ray import tune
    from ray.tune.search.sample import Categorical, Float, Integer

    assert space.to_tune({"grid": [1, 2]}) == tune.grid_search([1, 2])
    assert isinstance(space.to_tune({"choice": ["nll", "kl"]}), Categorical)
    assert isinstance(space.to_tune({"loguniform": [1e-5, 1e-3]}), Float)
    assert isinstance(space.to_tune({"randint": [1, 4]}), Integer)
    assert space.to_tune(0.5) == 0.5
    spec = specs.from_dict(dict(raw(), training=dict(raw()["training"], seeds=[0, 1])))
    assert space.param_space(spec, "unilogit")["run"]["seed"] == tune.grid_search([0, 1])
    assert space.grid_size(spec, "unilogit") == 4


def test_python_api_accepts_tune_objects():
    from ray import tune

    spec = specs.from_dict(dict(raw(), methods={"npo": {"lr": tune.loguniform(1e-5, 1e-3), "beta": 0.1}}))
    assert space.param_space(spec, "npo")["run"]["lr"] is spec.methods["npo"]["lr"]


@pytest.mark.parametrize("change,message", BAD, ids=[m.split(" ")[0] for _, m in BAD])
def test_bad_specs_get_one_line_errors(change, message, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(apply(raw(), change)))
    with pytest.raises(specs.SpecError) as error:
        specs.load(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_yaml_level_errors(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: a\nname: b\n")
    with pytest.raises(specs.SpecError, match="key 'name' appears twice"):
        specs.load(path)
    path.write_text("name: [a\n")
    with pytest.raises(specs.SpecError, match="not valid YAML"):
        specs.load(path)
    with pytest.raises(specs.SpecError, match="does not exist"):
        specs.load(tmp_path / "missing.yaml")


def test_deepspeed_config_is_a_pure_function_of_the_settings():
    config = deepspeed_config(micro_batch=4, grad_accum=2, world_size=2, zero_stage=3, bf16=True, offload=True)
    assert config["train_batch_size"] == 16 and config["gradient_accumulation_steps"] == 2
    assert config["zero_optimization"]["stage"] == 3 and config["bf16"] == {"enabled": True}
    assert config["zero_optimization"]["offload_param"] == {"device": "cpu"}
    assert "bf16" not in deepspeed_config(micro_batch=1, grad_accum=1, world_size=1, zero_stage=0)
    assert "contiguous_gradients" not in config["zero_optimization"]  # stage 3 manages its own buffers
    stage2 = deepspeed_config(micro_batch=1, grad_accum=1, world_size=2, zero_stage=2, contiguous_gradients=False)
    assert stage2["zero_optimization"]["contiguous_gradients"] is False


def test_resource_plan_shares_the_node_and_refuses_what_cannot_fit():
    spec = specs.load(TINY)
    scaling = cluster.bundles(spec, {"CPU": 2.0}, 2.0, 0.0)
    assert scaling.cpus_per_worker == 0.95 and 0.1 + 2 * scaling.cpus_per_worker <= 2.0
    assert dataclasses.replace(scaling, cpus_per_worker=None) == spec.scaling  # only the share is resolved
    big = specs.from_dict(dict(raw(), scaling={"workers": 3, "cpus_per_worker": 1.0}))
    with pytest.raises(specs.SpecError, match=r"a trial needs 3.1 CPUs .* but the cluster has 2"):
        cluster.bundles(big, {"CPU": 2.0}, 2.0, 0.0)
    gpu = specs.from_dict(dict(raw(), scaling={"workers": 4, "use_gpu": True}))
    with pytest.raises(specs.SpecError, match="a trial needs 4 GPUs"):
        cluster.bundles(gpu, {"CPU": 16.0, "GPU": 2.0}, 16.0, 2.0)
    assert cluster.bundles(gpu, {"CPU": 16.0, "GPU": 4.0}, 16.0, 4.0).cpus_per_worker == 1.0  # one CPU, one GPU each


@pytest.mark.parametrize("workers,cpus,total,fits", [
    (2, 2.0, 2.0, True),  # the demo: (2 − 0.1) / 2 = 0.95 each
    (3, 2.0, 2.0, True),  # 0.63 each
    (4, 2.0, 2.0, False),  # 0.475 each: below half a core
    (64, 2.0, 2.0, False),
    (64, 48.0, 48.0, True),  # 0.74 each
    (64, 8.0, 64.0, False),  # 8 nodes of 8: the shared default packs a trial on one node
])
def test_a_worker_never_gets_less_than_half_a_cpu(workers, cpus, total, fits):
    spec = specs.from_dict(dict(raw(), scaling={"workers": workers}))
    share = (cpus - spec.scaling.trial_cpus) / workers
    assert fits == (share >= 0.5)
    if fits:
        assert cluster.bundles(spec, {"CPU": total}, cpus, 0.0).cpus_per_worker == math.floor(share * 100) / 100
        return
    with pytest.raises(specs.SpecError) as error:
        cluster.bundles(spec, {"CPU": total}, cpus, 0.0)
    message = str(error.value)
    assert message.startswith(f"scaling.workers: {workers} needs {workers} × 0.5 CPUs but the ")
    assert f"has {cpus:g}" in message and "\n" not in message
    assert ("cluster has" in message) == (total == cpus)


def test_a_method_that_asks_for_more_workers_is_named():
    spec = specs.from_dict(dict(raw(), methods={"ga": {"lr": 1e-3, "workers": {"grid": [1, 8]}}}))
    with pytest.raises(specs.SpecError, match=r"^methods\.ga\.workers: 8 needs 8 × 0\.5 CPUs but the cluster has 2"):
        cluster.bundles(spec, {"CPU": 2.0}, 2.0, 0.0)


def test_objective_respects_bounds():
    objective = specs.Objective("retain", "max", {"forget": {"max": 0.2}})
    assert objective_value({"retain": 0.8, "forget": 0.1}, objective) == 0.8
    assert objective_value({"retain": 0.9, "forget": 0.5}, objective) == -1e6
    assert objective_value({"retain": 0.9}, None) is None
    assert objective_value({"forget": 0.9}, specs.Objective("forget", "min")) == 0.9
    assert objective_value({}, specs.Objective("forget", "min")) == 1e6


def test_the_zoo_spec_names_every_registered_method():
    from unlearn import methods

    spec = specs.load(TINY.parent / "zoo.yaml")
    assert sorted(spec.methods) == methods.names() and not spec.scaling.use_gpu
    assert {name for name in spec.methods if "lora" in spec.space(name)} == {"ga", "undial"}


@pytest.mark.parametrize("name", ["gpu-8b", "muse_news", "rwku"])
def test_gpu_spec_loads_and_plans_on_a_4_gpu_node(name):
    spec = specs.load(TINY.parent / f"{name}.yaml")
    assert spec.scaling.zero_stage == 3 and spec.scaling.workers == 4 and spec.scaling.use_gpu
    assert set(spec.methods) == {"ga", "gd", "npo", "undial", "unilogit"}
    assert cluster.bundles(spec, {"CPU": 64.0, "GPU": 8.0}, 32.0, 4.0).cpus_per_worker == 8
    config = deepspeed_config(micro_batch=4, grad_accum=4, world_size=4, zero_stage=3, bf16=True)
    assert config["train_batch_size"] == 64


# ---------------------------------------------------------------------------------------------
# the benchmark decides: oracle, preparation; benchmark parameters as a grid


def with_benchmark(name: str, params: dict, **changes) -> dict:
    return dict(raw(), benchmark={"name": name, "params": params}, **changes)


@pytest.mark.parametrize("name, params", [("rwku", {}), ("muse", {})])
def test_a_benchmark_that_cannot_prepare_refuses_model_base(name, params):
    with pytest.raises(specs.SpecError) as error:
        specs.from_dict(with_benchmark(name, params))
    message = str(error.value)
    assert message.startswith("model.base must be left out") and f"the {name} benchmark" in message
    assert "model.target" in message and "\n" not in message
    # the same benchmark with its own models is a valid sweep, without an oracle (it needs none)
    spec = specs.from_dict(with_benchmark(name, params, model={"target": "some/model"}))
    assert spec.model.oracle is None and not spec.benchmark.build().declared.needs_oracle


def test_the_oracle_is_required_only_where_the_benchmark_needs_one(tmp_path):
    assert benchmarks.get("synthetic").declared.needs_oracle
    with pytest.raises(specs.SpecError, match=r"^model.oracle must be a model directory \(the synthetic benchmark"):
        specs.from_dict(dict(raw(), model={"target": "some/model"}))
    assert specs.from_dict(dict(raw(), model={"target": "some/model", "oracle": "other/model"})).model.oracle
    jsonl = specs.from_dict(with_benchmark("jsonl", {"path": str(tmp_path)}))  # jsonl prepares from a base
    assert jsonl.model.base == "tiny" and jsonl.benchmark.build().declared.can_prepare


TOFU_FIXTURE = str(Path(__file__).parent / "fixtures" / "tofu")
SPLITS = {"split": {"grid": ["forget01", "forget05"]}, "source": TOFU_FIXTURE}
ORACLES = {"split=forget01": "retain/99", "split=forget05": "retain/95"}
GD = {"gd": {"lr": 1e-5}}


@pytest.mark.parametrize("params, oracle, message", [
    (SPLITS, "retain/90", r"^model.oracle must be one retrained model per grid point, as benchmark.params.split "
                          r"changes what is forgotten: \{split=forget01: \.\.\., split=forget05: \.\.\.\}; "
                          r"got 'retain/90'$"),
    (SPLITS, {"split=forget01": "retain/99"}, r"^model.oracle must be a model for every grid point \(missing: "
                                              r"split=forget05\); got "),
    (SPLITS, {**ORACLES, "split=forget10": "retain/90"}, r"^model.oracle.split=forget10 must be a grid point of the "
                                                        r"benchmark: split=forget01, split=forget05; got "),
    ({"source": TOFU_FIXTURE}, {"": "retain/90"}, r"^model.oracle must be one model directory or hub id \(the "
                                                  r"benchmark has no grid\); got \{'': 'retain/90'\}$"),
    (SPLITS, {"split=forget01": "retain/99", "split=forget05": ""}, r"^model.oracle must be a model directory or "
                                                                   r"hub id, or a mapping of grid point to one; got"),
])
def test_a_grid_that_changes_what_is_forgotten_needs_an_oracle_per_grid_point(params, oracle, message):
    with pytest.raises(specs.SpecError, match=message):
        specs.from_dict(with_benchmark("tofu", params, model={"target": "tofu/full", "oracle": oracle},
                                       methods=GD))


def test_each_grid_point_gets_its_own_oracle_and_a_grid_that_keeps_the_forget_set_shares_one(tmp_path, monkeypatch):
    from sweeps.run import cells_for

    monkeypatch.setenv("UNLEARN_CACHE", str(tmp_path))
    spec = specs.from_dict(with_benchmark("tofu", SPLITS, model={"target": "tofu/full", "oracle": ORACLES},
                                          methods=GD))
    cells = cells_for(spec, {}, lambda line: None)
    assert [(c.label, c.target, c.oracle) for c in cells] == [
        ({"split": "forget01"}, "tofu/full", "retain/99"), ({"split": "forget05"}, "tofu/full", "retain/95")]
    assert [c.data.split for c in cells] == ["forget01", "forget05"]  # each oracle beside its own forget set
    # the generation length changes no example: one oracle serves every grid point
    shared = specs.from_dict(with_benchmark("tofu", {"split": "forget01", "source": TOFU_FIXTURE,
                                                     "max_new_tokens": {"grid": [8, 16]}},
                                            model={"target": "tofu/full", "oracle": "retain/99"}, methods=GD))
    assert [c.oracle for c in cells_for(shared, {}, lambda line: None)] == ["retain/99", "retain/99"]
    assert specs.from_dict(specs.to_dict(spec)).model.oracle == ORACLES  # as the saved spec.yaml holds it


def test_a_grid_over_benchmark_parameters_expands_to_every_combination():
    params = {"seed": 1, "people": {"grid": [20, 24]}, "forget_fraction": 0.2, "facts": 4, "bios": {"grid": [2, 3]}}
    spec = specs.from_dict(with_benchmark("synthetic", params))
    assert spec.benchmark.grid() == {"people": [20, 24], "bios": [2, 3]}
    labels = [{"people": 20, "bios": 2}, {"people": 20, "bios": 3}, {"people": 24, "bios": 2},
              {"people": 24, "bios": 3}]
    fixed = {"seed": 1, "forget_fraction": 0.2, "facts": 4}
    assert spec.benchmark.variants() == [(label, {**fixed, **label}) for label in labels]
    for label in labels:
        built = spec.benchmark.build(label)
        assert built == benchmarks.get("synthetic", **fixed, **label)
        assert (built.params.people, built.params.bios, built.params.seed) == (label["people"], label["bios"], 1)
    assert len({spec.benchmark.build(label).key() for label in labels}) == 4  # each its own data and models
    with pytest.raises(specs.SpecError, match="no grid point"):
        spec.benchmark.build({"people": 99, "bios": 2})
    # the names of the grid points: one per label, whatever the order of its keys
    keys = [specs.variant_key(label) for label in labels]
    assert len(set(keys)) == 4 and specs.variant_key({"bios": 2, "people": 20}) == keys[0]
    assert json.loads(keys[0]) == labels[0]
    # the sweep runs every method configuration once per grid point
    assert space.grid_size(spec, "unilogit") == 2 * 4 and space.grid_size(spec, "undial") == 4

    from ray import tune

    tuned = space.param_space(spec, "unilogit")["run"]
    assert tuned["people"] == tune.grid_search([20, 24]) and tuned["bios"] == tune.grid_search([2, 3])
    assert "seed" in tuned and "facts" not in tuned


def test_without_a_grid_the_benchmark_is_its_fixed_parameters():
    spec = specs.load(TINY)
    assert spec.benchmark.grid() == {} and spec.benchmark.variants() == [({}, raw()["benchmark"]["params"])]
    assert spec.benchmark.build() == benchmarks.get("synthetic", **raw()["benchmark"]["params"])
    assert space.grid_size(spec, "unilogit") == 2  # the two learning rates alone


@pytest.mark.parametrize("grid, message", [
    ({"people": {"grid": [20, 2]}}, "benchmark: synthetic.people must be an integer in [4, 1000]; got 2"),
    ({"prompt": {"grid": ["plain", "xml"]}}, "benchmark: synthetic.prompt must be one of plain, chat"),
    ({"people": {"grid": []}}, "benchmark.params.people must be {grid: [value, ...]} with a non-empty list"),
    ({"people": {"grid": 20}}, "benchmark.params.people must be {grid: [value, ...]} with a non-empty list"),
    ({"people": {"grid": [20], "choice": [24]}}, "benchmark.params.people must be {grid: [value, ...]}"),
])
def test_a_bad_value_inside_a_benchmark_grid_is_refused_naming_the_parameter(grid, message):
    with pytest.raises(specs.SpecError) as error:
        specs.from_dict(with_benchmark("synthetic", dict(raw()["benchmark"]["params"], **grid)))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_benchmark_parameter_that_is_not_a_mapping_is_refused():
    with pytest.raises(specs.SpecError, match=r"^benchmark.params must be a mapping"):
        specs.BenchmarkSpec("synthetic", [("people", 20)])


@pytest.fixture
def gridded(monkeypatch):
    """A benchmark ``gridded`` whose parameters are named like hyper-parameters of a trial (``gamma``
    is UnDIAL's, ``lr`` everyone's, ``subject`` the sweep's own), registered for one test only."""
    def factory(gamma=1.0, lr=1.0, subject=None, **params):
        for name, value in (("gamma", gamma), ("lr", lr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"gridded.{name} must be a number > 0; got {value!r}")
        return benchmarks.get("synthetic", **params)

    monkeypatch.setitem(benchmark_spec._REGISTRY, "gridded", factory)
    return "gridded"


def test_a_gridded_name_that_collides_with_a_hyper_parameter_is_refused(gridded):
    params = dict(raw()["benchmark"]["params"], gamma={"grid": [1.0, 2.0]})
    with pytest.raises(specs.SpecError) as error:  # tiny runs UnDIAL, whose γ this would overwrite
        specs.from_dict(with_benchmark(gridded, params))
    assert str(error.value).startswith("benchmark.params.gamma must be a name that is not a hyper-parameter of undial")
    # without UnDIAL nothing collides
    only_unilogit = with_benchmark(gridded, params, methods={"unilogit": raw()["methods"]["unilogit"]})
    assert specs.from_dict(only_unilogit).benchmark.grid() == {"gamma": [1.0, 2.0]}
    # a trial key collides with every method; a fixed (not gridded) value is no sweep dimension and is fine
    with pytest.raises(specs.SpecError, match="^benchmark.params.lr must be a name that is not a hyper-parameter"):
        specs.from_dict(with_benchmark(gridded, dict(params, gamma=1.0, lr={"grid": [1.0, 2.0]})))
    assert specs.from_dict(with_benchmark(gridded, dict(params, gamma=2.0, lr=3.0))).benchmark.grid() == {}
    with pytest.raises(specs.SpecError, match="^benchmark: gridded.gamma must be a number > 0; got -1"):
        specs.from_dict(with_benchmark(gridded, dict(params, gamma={"grid": [1.0, -1]})))


@pytest.mark.parametrize("name", specs.RESERVED)
def test_a_grid_named_like_what_the_sweep_sets_itself_is_refused(name, gridded):
    params = dict(raw()["benchmark"]["params"], **{name: {"grid": [1, 2]}})
    with pytest.raises(specs.SpecError, match=f"^benchmark.params.{name} must be a name that is not a hyper-param"):
        specs.from_dict(with_benchmark("synthetic" if name == "seed" else gridded, params))


def sweep_of(spec, subjects=(), labels=({},)) -> trial.Sweep:
    """A sweep context without Ray: one grid point per label, its model directory named after it."""
    points = {specs.variant_key(label): trial.GridPoint("synthetic", dict(label), f"m{specs.variant_key(label)}",
                                                        "data", specs.variant_key(label)) for label in labels}
    scaling = dataclasses.replace(spec.scaling, cpus_per_worker=0.95)
    return trial.Sweep(spec, scaling, points, tuple(subjects), "refs.pt", "/sweep")


def test_the_point_of_a_trial_picks_its_model_and_references():
    spec = specs.from_dict(with_benchmark("synthetic", {"people": {"grid": [20, 24]}}))
    sweep = sweep_of(spec, labels=({"people": 20}, {"people": 24}))
    point = sweep.point({"people": 24, "lr": 1e-3})
    assert (point.model_dir, point.refs_key, point.subject) == ('m{"people": 24}', '{"people": 24}', None)
    with_subjects = dataclasses.replace(sweep, subjects=("A", "B"))
    point = with_subjects.point({"people": 20, "subject": "B"})
    assert point.model_dir == 'm{"people": 20}' and point.subject == "B"
    assert point.refs_key == specs.variant_key({"people": 20, "subject": "B"})
    assert sweep_of(specs.load(TINY)).point({"lr": 1e-3}).refs_key == "{}"


def test_a_trial_plan_is_typed_from_the_nested_param_space():
    """Tune samples ``{"method": ..., "run": ...}``; the trial builds one plan: the method's config
    instance, the run settings over the spec's defaults, the grid point and the paths."""
    from unlearn.methods.undial import UnDIAL

    spec = specs.load(TINY)
    tuned = space.param_space(spec, "undial")
    assert set(tuned) == {"method", "run"}
    assert tuned["method"] == {"gamma": 10, "retain": "nll"} and set(tuned["run"]) == {"lr", "seed", "proposed_by"}
    sampled = {"method": {"gamma": 10, "retain": "nll"}, "run": {"lr": 3e-3, "seed": 0}}
    plan = sweep_of(spec).trial_plan("undial", sampled, trial_id="t1", trial_dir="/sweep/undial/run_trial_t1")
    assert plan.method == UnDIAL(gamma=10, retain="nll") and plan.method.name == "undial"
    assert plan.run == specs.RunSettings(lr=3e-3, epochs=2, micro_batch=4, grad_accum=1, workers=2, zero_stage=2,
                                         weight_decay=0.0, seed=0)
    assert plan.failure.max_retries == 1  # the spec's default reaches Ray Train's failure config
    assert plan.evaluation.softlabel_gammas == (10.0,) and plan.eval.final == spec.eval.final
    assert plan.paths.in_trial("metrics.jsonl") == Path("/sweep/undial/run_trial_t1/metrics.jsonl")
    assert pickle.loads(pickle.dumps(plan)) == plan  # it travels to the workers as it is
    unilogit = sweep_of(spec).trial_plan("unilogit", {"method": {"retain": "nll"}, "run": {"lr": 1e-3, "zero_stage": 3,
                                                                                    "seed": 0}})
    assert unilogit.run.zero_stage == 3 and unilogit.paths.in_trial("metrics.jsonl") is None
    assert space.flat(sampled) == {"gamma": 10, "retain": "nll", "lr": 3e-3, "seed": 0}


def test_a_lora_section_reaches_the_trial_plan_over_loras_defaults():
    """A method's ``lora`` section is a nested part of its param space (its primitives are Tune's),
    with LoRA's defaults filled in; the trial's plan carries the sampled ``LoraConfig`` and its
    record the fields as ``lora_<field>``. Without a section every weight trains."""
    from ray import tune

    from unlearn.lora import LoraConfig

    section = {"r": {"grid": [4, 8]}, "target_modules": ["q_proj", "v_proj"]}
    spec = specs.from_dict(dict(raw(), methods={"undial": {"lr": 3e-3, "gamma": 10, "lora": section}}))
    tuned = space.param_space(spec, "undial")
    assert tuned["lora"] == {"r": tune.grid_search([4, 8]), "alpha": 16, "dropout": 0.0,
                             "target_modules": ["q_proj", "v_proj"]}
    assert tuned["method"] == {"gamma": 10} and space.grid_size(spec, "undial") == 2
    sampled = {"method": {"gamma": 10}, "run": {"lr": 3e-3, "seed": 0},
               "lora": {"r": 4, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}
    plan = sweep_of(spec).trial_plan("undial", sampled)
    assert plan.lora == LoraConfig(r=4, alpha=16, target_modules=("q_proj", "v_proj"))
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert space.flat(sampled) == {"gamma": 10, "lr": 3e-3, "seed": 0, "lora_r": 4, "lora_alpha": 16,
                                   "lora_dropout": 0.0, "lora_target_modules": ["q_proj", "v_proj"]}
    defaults = specs.from_dict(dict(raw(), methods={"ga": {"lr": 1e-3, "lora": {}}}))
    assert space.param_space(defaults, "ga")["lora"] == {"r": 8, "alpha": 16, "dropout": 0.0,
                                                         "target_modules": "all-linear"}
    tiny = specs.load(TINY)
    assert "lora" not in space.param_space(tiny, "undial")
    assert sweep_of(tiny).trial_plan("undial", {"method": {}, "run": {"lr": 1e-3, "seed": 0}}).lora is None


def test_lora_target_modules_that_name_nothing_in_the_target_stop_the_sweep_before_it_starts(tmp_path):
    from sweeps.run import run_sweep

    modules = {"grid": [["q_proj"], ["attn"]]}
    spec = specs.from_dict(dict(raw(), methods={"undial": {"lr": 1e-3, "lora": {"target_modules": modules}}}))
    with pytest.raises(specs.SpecError) as error:
        run_sweep(spec, storage=str(tmp_path / "runs"))
    assert str(error.value) == ("methods.undial.lora.target_modules must be module names of tiny (its linear layers: "
                                "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj); got ['attn']")
    assert not (tmp_path / "runs").exists()


def test_run_settings_are_validated_naming_the_field():
    spec = specs.load(TINY)
    with pytest.raises(specs.SpecError, match=r"^run.zero_stage must be an integer in \[0, 3\]; got 4$"):
        specs.RunSettings.of(spec, {"lr": 1e-3, "zero_stage": 4})
    with pytest.raises(specs.SpecError, match=r"^run.lr must be given"):
        specs.RunSettings.of(spec, {"seed": 0})
    assert specs.TRIAL_KEYS == ("lr", "epochs", "micro_batch", "grad_accum", "workers", "zero_stage", "weight_decay")


@pytest.mark.parametrize("field_name", ["lr", "epochs", "seed", "subject", "lora"])
def test_a_method_field_named_like_a_trial_key_is_refused(field_name, monkeypatch):
    from unlearn.methods import base

    fake = dataclasses.make_dataclass("Clashing", [(field_name, float, dataclasses.field(default=1.0))],
                                      bases=(base.MethodConfig,), frozen=True)
    monkeypatch.setitem(base._REGISTRY, "clashing", fake)
    with pytest.raises(specs.SpecError) as error:
        specs.from_dict(dict(raw(), methods={"clashing": {"lr": 1e-3}}))
    message = str(error.value)
    assert message.startswith("methods.clashing must be a method whose fields are not named like a trial key")
    assert message.endswith(f"got {field_name!r}") and "\n" not in message


# ---------------------------------------------------------------------------------------------
# what the references hold, from the methods of the sweep


@pytest.mark.parametrize("undial, expected", [
    ({"lr": 1e-3, "gamma": 3}, (3.0,)),  # fixed
    ({"lr": 1e-3, "gamma": {"grid": [30, 3, 10]}}, (3.0, 10.0, 30.0)),  # every value of a grid
    ({"lr": 1e-3, "gamma": {"choice": [1.0, 2.5]}}, (1.0, 2.5)),
    ({"lr": 1e-3, "gamma": {"loguniform": [1.0, 100.0]}}, (1.0, 100.0)),  # a range: its two ends
    ({"lr": 1e-3}, (10.0,)),  # not searched: UnDIAL's default γ
    (None, (10.0,)),  # no UnDIAL in the sweep: the default γ
])
def test_softlabel_gammas_follow_the_undial_space(undial, expected):
    methods = {"unilogit": {"lr": 1e-3}} if undial is None else {"unilogit": {"lr": 1e-3}, "undial": undial}
    spec = specs.from_dict(dict(raw(), methods=methods))
    assert specs.softlabel_gammas(spec) == expected
    assert all(isinstance(g, float) for g in specs.softlabel_gammas(spec))


def test_softlabel_gammas_of_the_tiny_spec_and_a_python_api_space():
    from ray import tune

    from unlearn import methods

    assert specs.softlabel_gammas(specs.load(TINY)) == (10.0,) == (float(methods.get("undial").gamma),)
    spec = specs.from_dict(dict(raw(), methods={"undial": {"lr": 1e-3, "gamma": tune.uniform(1.0, 5.0)}}))
    assert specs.softlabel_gammas(spec) == (10.0,)  # a Tune domain has no values to list: the default


@pytest.mark.parametrize("methods, expected", [
    (["unilogit", "undial"], False),
    (["ga"], False),
    (["ga", "gd", "undial", "unilogit"], False),
    (["npo"], True),
    (["ga", "npo"], True),
])
def test_reference_nlls_are_needed_only_with_npo(methods, expected):
    spec = specs.from_dict(dict(raw(), methods={m: {"lr": 1e-3} for m in methods}))
    assert specs.needs_ref_nll(spec) is expected


def test_resume_accepts_a_spec_saved_before_a_field_was_added_and_refuses_a_changed_one(tmp_path):
    from sweeps.run import _check_resume, _plain

    spec = specs.from_dict(raw())
    saved = _plain(specs.to_dict(spec))
    del saved["training"]["group_by_length"]  # written by a version that did not have the field
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(saved))
    _check_resume(spec, tmp_path, resume=True)
    changed = specs.from_dict(apply(raw(), {"training": {"epochs": 3}}))
    with pytest.raises(specs.SpecError, match="--resume: the spec differs"):
        _check_resume(changed, tmp_path, resume=True)
