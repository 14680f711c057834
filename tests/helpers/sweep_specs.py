"""The sweep spec cases shared by ``test_sweep_spec`` and ``test_bad_input``: the tiny spec and
malformed variants of it, each with the one-line message it must fail with."""

from pathlib import Path

import yaml

TINY = Path(__file__).resolve().parents[2] / "sweeps" / "specs" / "tiny.yaml"


def raw() -> dict:
    """The tiny spec as plain data (a fresh copy each call)."""
    return yaml.safe_load(TINY.read_text())


def apply(data: dict, change: dict) -> dict:
    """``data`` with ``change`` merged in: the sections below are updated key by key, others replaced."""
    for key, value in change.items():
        nested = isinstance(value, dict) and key in ("training", "eval", "scaling", "benchmark")
        data[key] = dict(data[key], **value) if nested else value
    return data


def own_benchmark(name: str, seed: int, methods: dict, *, epochs: int, **sections) -> dict:
    """A tiny sweep on a small synthetic benchmark of its own (``seed``: a cache key no other test
    uses, so its target and oracle are prepared, in one epoch), one worker per trial, ZeRO-0 unless
    ``sections`` say otherwise; ``sections`` replace whole top-level sections. A worker group lost
    to the loaded test machine is started again once (from scratch: no checkpoints between epochs)."""
    return {
        "name": name,
        "model": {"base": "tiny", "prepare": {"lr": 3.0e-3, "max_epochs": 1, "micro_batch": 8, "stop_recall": 0.01}},
        "benchmark": {"name": "synthetic", "params": {"seed": seed, "people": 6, "forget_fraction": 0.34, "facts": 3,
                                                      "bios": 1}},
        "methods": methods,
        "training": {"epochs": epochs, "micro_batch": 4, "seeds": [0], "max_length": 128},
        "eval": {"every_epoch": ["kl"], "final": ["kl"]},
        "scaling": {"workers": 1, "zero_stage": 0},
        "failure": {"max_retries": 1, "checkpoint_every_epoch": False},
        **sections,
    }


# (change to the tiny spec, what the one-line error must say)
BAD = [
    ({"nme": "x"}, "nme must be one of name, model, methods"),
    ({"methods": {"npx": {"lr": 1e-3}}},
     "unknown method 'npx'; known: ceu, ga, gd, idkdpo, idknll, me, npo, pdu, rmu, satimp, simnpo, undial, "
     "unilogit, wga"),
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
    ({"training": {"group_by_length": "yes"}}, "training.group_by_length must be true or false"),
    ({"eval": {"autocast": 1}}, "eval.autocast must be true or false"),
    # eval.relearn (every field given, nothing else; a partial relearning needs a benchmark that groups its forget set)
    ({"eval": {"relearn": 5}}, "eval.relearn must be a mapping with keys examples, steps, lr; got 5"),
    ({"eval": {"relearn": {"examples": 0, "steps": 2, "lr": 1e-3}}},
     "eval.relearn.examples must be an integer >= 1 or 'all'; got 0"),
    ({"eval": {"relearn": {"examples": "half", "steps": 2, "lr": 1e-3}}},
     "eval.relearn.examples must be an integer >= 1 or 'all'; got 'half'"),
    ({"eval": {"relearn": {"examples": 4, "steps": 2.5, "lr": 1e-3}}}, "eval.relearn.steps must be an integer >= 1"),
    ({"eval": {"relearn": {"examples": 4, "steps": 2, "lr": 0}}}, "eval.relearn.lr must be a number > 0; got 0"),
    ({"eval": {"relearn": {"examples": 4, "steps": 2}}}, "eval.relearn.lr must be given"),
    ({"eval": {"relearn": {"examples": 4, "steps": 2, "lr": 1e-3, "epochs": 1}}},
     "eval.relearn.epochs must be one of examples, steps, lr (unknown key); got 'epochs'"),
    ({"model": {"target": "some/model", "oracle": "some/oracle"}, "benchmark": {"name": "muse", "params": {}},
      "eval": {"relearn": {"examples": 4, "steps": 2, "lr": 1e-3}}},
     "eval.relearn.examples must be 'all': the muse benchmark cannot say which probes a forget example covers"),
    ({"training": {"seeds": []}}, "training.seeds must be a non-empty list"),
    ({"training": {"schedule": "step"}}, "training.schedule must be one of constant, linear, cosine"),
    ({"training": {"epoch": 2}}, "training.epoch must be one of epochs"),
    ({"eval": {"every_epoch": ["rouge"]}},
     "eval.every_epoch[] must be one of generation, likelihood, verbmem, mia, kl"),
    ({"scaling": {"zero_stage": 5}}, "scaling.zero_stage must be an integer in [0, 3]"),
    ({"scaling": {"workers": 0}}, "scaling.workers must be an integer >= 1"),
    ({"scaling": {"offload": True, "zero_stage": 1}}, "scaling.offload must be used with zero_stage 2 or 3"),
    ({"scaling": {"use_gpu": "yes"}}, "scaling.use_gpu must be true or false"),
    ({"scaling": {"gradient_checkpointing": "on"}}, "scaling.gradient_checkpointing must be true or false"),
    ({"scaling": {"cpus_per_worker": 0.25}}, "scaling.cpus_per_worker must be a number >= 0.5; got 0.25"),
    ({"scaling": {"use_gpu": True, "gpus_per_worker": 0.5}},
     "scaling.gpus_per_worker must be 1 with use_gpu (each worker drives one GPU); got 0.5"),
    ({"scaling": {"use_gpu": True, "gpus_per_worker": 2}}, "scaling.gpus_per_worker must be 1 with use_gpu"),
    ({"search": {"algorithm": "random"}}, "search.objective must be given when the search is not a plain grid"),
    ({"search": {"algorithm": "bayes"}}, "search.algorithm must be one of grid, random, optuna"),
    ({"search": {"algorithm": "random", "objective": {"metric": "x", "mode": "up"}}},
     "objective.mode must be max or min"),
    ({"benchmark": {"name": "muse-newz"}}, "benchmark: unknown benchmark 'muse-newz'"),
    ({"benchmark": {"params": {"people": 2}}}, "synthetic.people must be"),
    ({"model": {"base": "tiny", "target": "x"}}, "model must be either {base: ...} or {target: ..., oracle: ...}"),
    ({"model": {"base": "tiny", "prepare": {"learning_rate": 1}}}, "model.prepare.learning_rate must be one of lr"),
    ({"max_concurrent_trials": 0}, "max_concurrent_trials must be an integer >= 1"),
    ({"name": "my sweep!"}, "name must be a non-empty name of letters"),
    ({"model": {"target": "some/model"}}, "model.oracle must be a model directory (the synthetic benchmark"),
    ({"benchmark": {"name": "rwku", "params": {}}}, "model.base must be left out: the rwku benchmark"),
    ({"benchmark": {"params": {"people": {"grid": [20, 2]}}}}, "benchmark: synthetic.people must be"),
    ({"benchmark": {"params": {"people": {"grid": []}}}}, "benchmark.params.people must be {grid: [value, ...]}"),
    ({"benchmark": {"params": {"seed": {"grid": [1, 2]}}}},
     "benchmark.params.seed must be a name that is not a hyper-parameter"),
    # a method's lora section
    ({"methods": {"undial": {"lr": 1e-3, "lora": 8}}},
     "methods.undial.lora must be a mapping with keys among r, alpha, dropout, target_modules"),
    ({"methods": {"undial": {"lr": 1e-3, "lora": {"rank": 8}}}},
     "methods.undial.lora.rank must be one of r, alpha, dropout, target_modules (unknown key); got 'rank'"),
    ({"methods": {"undial": {"lr": 1e-3, "lora": {"r": 0}}}}, "methods.undial.lora.r must be an integer >= 1; got 0"),
    ({"methods": {"undial": {"lr": 1e-3, "lora": {"r": {"grid": [8, 4.5]}}}}},
     "methods.undial.lora.r must be an integer >= 1; got 4.5"),
    ({"methods": {"undial": {"lr": 1e-3, "lora": {"alpha": 0}}}}, "methods.undial.lora.alpha must be a number > 0"),
    ({"methods": {"undial": {"lr": 1e-3, "lora": {"dropout": 1}}}},
     "methods.undial.lora.dropout must be a number in [0, 1); got 1"),
    ({"methods": {"undial": {"lr": 1e-3, "lora": {"dropout": {"uniform": [0, 2]}}}}},
     "methods.undial.lora.dropout must be a number in [0, 1); got 2"),
    ({"methods": {"undial": {"lr": 1e-3, "lora": {"target_modules": []}}}},
     "methods.undial.lora.target_modules must be all-linear or a non-empty list of distinct module names"),
    ({"methods": {"undial": {"lr": 1e-3, "lora": {"target_modules": "q_proj"}}}},
     "methods.undial.lora.target_modules must be all-linear or a non-empty list"),
    ({"methods": {"undial": {"lr": 1e-3, "lora": {"target_modules": {"sample": ["q_proj"]}}}}},
     "methods.undial.lora.target_modules must be a value or one of"),
]
