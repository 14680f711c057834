"""The sweep spec, search spaces, DeepSpeed config and resource planning (no Ray cluster)."""

from pathlib import Path

import pytest
import yaml

from sweeps import cluster, space, spec as specs
from sweeps.deepspeed_config import deepspeed_config
from sweeps.worker import objective_value

TINY = Path(__file__).resolve().parents[1] / "sweeps" / "specs" / "tiny.yaml"


def raw():
    return yaml.safe_load(TINY.read_text())


def test_tiny_spec_loads():
    spec = specs.load(TINY)
    assert set(spec.methods) == {"unilogit", "undial"} and spec.scaling.workers == 2
    assert space.grid_size(spec, "unilogit") == 2 and space.grid_size(spec, "undial") == 2


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
    assert space.param_space(spec, "undial")["seed"] == tune.grid_search([0, 1])
    assert space.grid_size(spec, "undial") == 4


def test_python_api_accepts_tune_objects():
    from ray import tune

    spec = specs.from_dict(dict(raw(), methods={"npo": {"lr": tune.loguniform(1e-5, 1e-3), "beta": 0.1}}))
    assert space.param_space(spec, "npo")["lr"] is spec.methods["npo"]["lr"]


BAD = [
    ({"nme": "x"}, "nme must be one of name, model, methods"),
    ({"methods": {"npx": {"lr": 1e-3}}}, "unknown method 'npx'; known: ga, gd, npo, undial, unilogit"),
    ({"methods": {"npo": {"beta": 0.1}}}, "methods.npo.lr must be given"),
    ({"methods": {"npo": {"lr": 1e-3, "gama": 1}}}, "methods.npo.gama must be one of forget_weight"),
    ({"methods": {"npo": {"lr": 1e-3, "beta": {"grid": [0.1, 0]}}}}, "beta must be a number > 0"),
    ({"methods": {"npo": {"lr": -1}}}, "methods.npo.lr must be a number > 0"),
    ({"methods": {"npo": {"lr": {"loguniform": [0, 1]}}}}, "loguniform must be [low, high] with low > 0"),
    ({"methods": {"npo": {"lr": {"sample": [1, 2]}}}}, "methods.npo.lr must be a value or one of"),
    ({"methods": {"undial": {"lr": 1e-3, "zero_stage": 4}}}, "methods.undial.zero_stage must be an integer in [0, 3]"),
    ({"methods": {"unilogit": {"lr": 1e-3, "divergence": "js"}}}, "divergence must be one of reverse, forward"),
    ({"methods": {}}, "methods must be a non-empty mapping"),
    ({"training": {"epochs": 0}}, "training.epochs must be an integer >= 1"),
    ({"training": {"seeds": []}}, "training.seeds must be a non-empty list"),
    ({"training": {"schedule": "step"}}, "training.schedule must be one of constant, linear, cosine"),
    ({"training": {"epoch": 2}}, "training.epoch must be one of epochs"),
    ({"eval": {"every_epoch": ["rouge"]}}, "eval.every_epoch[] must be one of generation, verbmem, mia, kl"),
    ({"scaling": {"zero_stage": 5}}, "scaling.zero_stage must be an integer in [0, 3]"),
    ({"scaling": {"workers": 0}}, "scaling.workers must be an integer >= 1"),
    ({"scaling": {"offload": True, "zero_stage": 1}}, "scaling.offload must be used with zero_stage 2 or 3"),
    ({"scaling": {"use_gpu": "yes"}}, "scaling.use_gpu must be true or false"),
    ({"search": {"algorithm": "random"}}, "search.objective must be given when the search is not a plain grid"),
    ({"search": {"algorithm": "bayes"}}, "search.algorithm must be one of grid, random, optuna"),
    ({"search": {"algorithm": "random", "objective": {"metric": "x", "mode": "up"}}}, "objective.mode must be max or min"),
    ({"benchmark": {"name": "muse-newz"}}, "benchmark: unknown benchmark 'muse-newz'"),
    ({"benchmark": {"params": {"people": 2}}}, "synthetic.people must be"),
    ({"model": {"base": "tiny", "target": "x"}}, "model must be either {base: ...} or {target: ..., oracle: ...}"),
    ({"model": {"base": "tiny", "prepare": {"learning_rate": 1}}}, "model.prepare.learning_rate must be one of lr"),
    ({"max_concurrent_trials": 0}, "max_concurrent_trials must be an integer >= 1"),
    ({"name": "my sweep!"}, "name must be a non-empty name of letters"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m.split(" ")[0] for _, m in BAD])
def test_bad_specs_get_one_line_errors(change, message, tmp_path):
    data = raw()
    for key, value in change.items():
        data[key] = dict(data[key], **value) if isinstance(value, dict) and key in ("training", "eval", "scaling",
                                                                                      "benchmark") else value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
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


def test_resource_plan_shares_the_node_and_refuses_what_cannot_fit():
    spec = specs.load(TINY)
    plan = cluster.plan(spec, {"CPU": 2.0}, 2.0, 0.0)
    assert plan["cpus_per_worker"] == 0.95 and 0.1 + 2 * plan["cpus_per_worker"] <= 2.0
    big = specs.from_dict(dict(raw(), scaling={"workers": 3, "cpus_per_worker": 1.0}))
    with pytest.raises(specs.SpecError, match=r"a trial needs 3.1 CPUs .* but the cluster has 2"):
        cluster.plan(big, {"CPU": 2.0}, 2.0, 0.0)
    gpu = specs.from_dict(dict(raw(), scaling={"workers": 4, "use_gpu": True}))
    with pytest.raises(specs.SpecError, match="a trial needs 4 GPUs"):
        cluster.plan(gpu, {"CPU": 16.0, "GPU": 2.0}, 16.0, 2.0)


def test_objective_respects_bounds():
    objective = {"metric": "retain", "mode": "max", "subject_to": {"forget": {"max": 0.2}}}
    assert objective_value({"retain": 0.8, "forget": 0.1}, objective) == 0.8
    assert objective_value({"retain": 0.9, "forget": 0.5}, objective) == -1e6
    assert objective_value({"retain": 0.9}, None) is None


@pytest.mark.parametrize("name", ["gpu-8b", "muse_news", "rwku"])
def test_gpu_spec_loads_and_plans_on_a_4_gpu_node(name):
    spec = specs.load(TINY.parent / f"{name}.yaml")
    assert spec.scaling.zero_stage == 3 and spec.scaling.workers == 4 and spec.scaling.use_gpu
    assert set(spec.methods) == {"ga", "gd", "npo", "undial", "unilogit"}
    plan = cluster.plan(spec, {"CPU": 64.0, "GPU": 8.0}, 32.0, 4.0)
    assert plan["cpus_per_worker"] == 8
    config = deepspeed_config(micro_batch=4, grad_accum=4, world_size=4, zero_stage=3, bf16=True)
    assert config["train_batch_size"] == 64
