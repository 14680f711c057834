"""What every Ray Train worker of a trial runs: load the target, wrap it in DeepSpeed, run the
``unlearn`` loop, and after every epoch checkpoint, evaluate and report.

Evaluation is correct under every ZeRO stage: below stage 3 rank 0 evaluates the engine's module
(it holds the full weights); at stage 3 the weights are gathered (``GatheredParameters``) into a
plain copy on rank 0. Rank 0 evaluates while the other ranks wait at the report barrier; every
worker calls ``ray.train.report`` once per epoch and rank 0's metrics reach Tune.
The last epoch's checkpoint is the unlearned model as a Hugging Face directory, without optimizer
state; earlier ones are DeepSpeed checkpoints (Ray keeps only the latest).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import math
import os
import tempfile
import time
from pathlib import Path


def settings(cfg: dict) -> dict:
    """A trial's effective settings: the sampled hyper-parameters over the spec's defaults."""
    training, scaling, hp = cfg["training"], cfg["scaling"], cfg["hp"]
    return {
        "epochs": hp.get("epochs", training["epochs"]),
        "micro_batch": hp.get("micro_batch", training["micro_batch"]),
        "grad_accum": hp.get("grad_accum", training["grad_accum"]),
        "workers": hp.get("workers", scaling["workers"]),
        "zero_stage": hp.get("zero_stage", scaling["zero_stage"]),
        "weight_decay": hp.get("weight_decay", training["weight_decay"]),
        "lr": hp["lr"],
        "seed": hp.get("seed", training["seeds"][0]),
    }


def method_params(cfg: dict) -> dict:
    return {k: v for k, v in cfg["hp"].items() if k in cfg["method_fields"]}


def grid_point(cfg: dict) -> tuple[dict, str]:
    """This trial's grid point of the benchmark (model, data, parameters) and the key of its
    references (the grid point's label, with the unlearning target when there are several)."""
    from sweeps.spec import variant_key

    label = {name: cfg["hp"][name] for name in cfg.get("facets", ())}
    cell = cfg["cells"][variant_key(label)]
    if cfg.get("subjects"):
        label["subject"] = cfg["hp"]["subject"]
    return cell, variant_key(label)


def objective_value(metrics: dict, objective: dict | None) -> float | None:
    """The scalar a non-grid search optimises: the metric when every bound holds, else a value
    worse than any admissible one (bounded metrics in this service lie within [-1e3, 1e3])."""
    if not objective:
        return None
    value = metrics.get(objective["metric"], float("nan"))
    feasible = all(
        (bound.get("max") is None or metrics.get(name, math.inf) <= bound["max"])
        and (bound.get("min") is None or metrics.get(name, -math.inf) >= bound["min"])
        for name, bound in objective["subject_to"].items())
    if feasible and not math.isnan(value):
        return float(value)
    return -1e6 if objective["mode"] == "max" else 1e6


def train_loop(cfg: dict) -> None:
    entered = time.time()
    import deepspeed
    import ray.train
    import torch
    import torch.distributed as dist

    import benchmarks
    from benchmarks.common import EvalConfig
    from sweeps.deepspeed_config import deepspeed_config
    from sweeps.engine import DeepSpeedEngine
    from unlearn import data as collation
    from unlearn import loop, methods, models, schedule

    started = time.time()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    run = settings(cfg)
    scaling = cfg["scaling"]
    threads = max(1, int(scaling.get("cpus_per_worker") or 1))
    # Rank 0 evaluates while the other ranks on its node wait at the report barrier: on CPU it
    # borrows their cores for that time (about 1.7x faster evaluation with two workers).
    eval_threads = max(threads, round(ctx.get_local_world_size() * (scaling.get("cpus_per_worker") or 1)))
    torch.set_num_threads(threads)
    device = torch.device(f"cuda:{ctx.get_local_rank()}") if scaling["use_gpu"] else torch.device("cpu")
    loop.set_seed(run["seed"])

    method = methods.make(cfg["method"], method_params(cfg))
    # Fixed cost of a trial: the worker group's start (from the trial's start to this function),
    # the imports above, loading, DeepSpeed's initialisation; recorded with every epoch's row.
    setup = {"group_start_s": round(entered - cfg["trial_started"], 3) if cfg.get("trial_started") else None,
             "imports_s": round(started - entered, 3)}
    cell, refs_key = grid_point(cfg)
    model, tokenizer = models.load_model(cell["model_dir"])
    # Rank 0 evaluates the engine's own module below ZeRO-3 (it holds the full weights); at ZeRO-3
    # a plain copy on the worker's device (bf16 when training in bf16) receives the gathered weights.
    evaluator = None
    if rank == 0 and run["zero_stage"] == 3:
        evaluator = copy.deepcopy(model).eval().to(device)
        if scaling["bf16"] and scaling["use_gpu"]:
            evaluator.to(torch.bfloat16)
    ref_model = copy.deepcopy(model).eval().to(device) if method.needs_ref_model else None
    if ref_model is not None and scaling["bf16"] and scaling["use_gpu"]:
        ref_model.to(torch.bfloat16)  # frozen: bf16 like the trained weights (the losses upcast its logits)
    bench = benchmarks.get(cfg["benchmark"]["name"], **cell["params"])
    dataset = bench.read(cell["data_root"])
    # pages in only what this rank reads
    entry = torch.load(cfg["refs"], weights_only=False, mmap=True)[refs_key]
    refs, ref_nll = entry["refs"], entry["ref_nll"]
    if cfg.get("subjects"):  # one unlearning target of a multi-target benchmark (RWKU)
        dataset = dataset.for_target(cfg["hp"]["subject"])
    collate = collation.Collator(tokenizer, max_length=cfg["training"]["max_length"], chat_template=dataset.chat)
    forget = loop.with_index(dataset.forget_examples())
    retain = dataset.retain_examples()

    config = loop.LoopConfig(epochs=run["epochs"], micro_batch=run["micro_batch"], seed=run["seed"])
    effective = run["micro_batch"] * run["grad_accum"] * world
    total = loop.total_steps(len(forget), config, effective)
    optimizer = torch.optim.AdamW(model.parameters(), lr=run["lr"], weight_decay=run["weight_decay"])
    lr_schedule = schedule.scheduler(optimizer, cfg["training"]["schedule"], total,
                                     min(cfg["training"]["warmup_steps"], total))
    ds_config = deepspeed_config(micro_batch=run["micro_batch"], grad_accum=run["grad_accum"], world_size=world,
                                 zero_stage=run["zero_stage"], bf16=scaling["bf16"], offload=scaling["offload"],
                                 grad_clip=cfg["training"]["grad_clip"])
    setup["load_s"] = round(time.time() - started, 3)
    _defer_muon_compile()
    ds_engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=lr_schedule,
                                         config=ds_config, dist_init_required=False)
    engine = DeepSpeedEngine(ds_engine)
    if rank == 0 and evaluator is None:
        evaluator = ds_engine.module
    start_epoch = _resume(ds_engine, ray.train.get_checkpoint())
    setup["ds_init_s"] = round(time.time() - started - setup["load_s"], 3)
    topology = {"world_size": world, "zero_stage": run["zero_stage"], "micro_batch": run["micro_batch"],
                "grad_accum": run["grad_accum"], "effective_batch": effective, "device": str(device),
                "bf16": scaling["bf16"], "start_epoch": start_epoch}
    eval_config = EvalConfig(**{k: v for k, v in cfg["eval"].items() if k not in ("every_epoch", "final")},
                             autocast=scaling["bf16"] and not scaling["use_gpu"],
                             softlabel_gammas=tuple(cfg.get("softlabel_gammas", ())))
    keep_epochs = cfg.get("checkpoint_every_epoch", True)
    staging = _staging_dir()
    clock = {"train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0, "epoch_start": time.time()}

    def on_epoch_end(epoch: int, state) -> None:
        clock["train_s"] += time.time() - clock["epoch_start"]
        last = epoch == run["epochs"]
        began = time.time()
        _gather_into(ds_engine, evaluator, run["zero_stage"])
        metrics: dict = {"epoch": epoch}
        with tempfile.TemporaryDirectory(dir=staging) as tmp:
            checkpoint = None
            if last and rank == 0:
                models.save_model(evaluator, tokenizer, os.path.join(tmp, "model"))
            elif not last and keep_epochs:
                ds_engine.save_checkpoint(tmp, tag=f"epoch{epoch}")
            clock["checkpoint_s"] += time.time() - began
            began = time.time()
            if rank == 0:
                parts = cfg["eval"]["final"] if last else cfg["eval"]["every_epoch"]
                torch.set_num_threads(eval_threads)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=eval_config.autocast):
                    metrics.update(bench.evaluate(evaluator, tokenizer, collate, dataset, refs, eval_config, tuple(parts)))
                torch.set_num_threads(threads)
                clock["eval_s"] += time.time() - began
                metrics.update({k: v for k, v in state.metrics.items() if k != "epoch"})
                metrics.update({**topology, **setup}, status="ok", final=last, method=cfg["method"],
                               wall_s=time.time() - started, **{k: round(v, 3) for k, v in clock.items()
                                                                 if k != "epoch_start"})
                objective = objective_value(metrics, cfg.get("objective"))
                if objective is not None:
                    metrics["objective"] = objective
                _record(cfg, metrics)
            if (rank == 0 and last) or (not last and keep_epochs):
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            began = time.time()
            # persists the checkpoint (counted as such); the last epoch's row is already written, so
            # its persisting time goes to the trial's side record
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_fn=_move_checkpoint)
            clock["checkpoint_s"] += time.time() - began
            if last and rank == 0:
                _note(cfg, final_report_s=round(time.time() - began, 3))
        if last and staging:
            with contextlib.suppress(OSError):  # left by another rank's files until they have moved
                os.rmdir(staging)
        clock["epoch_start"] = time.time()

    config = dataclasses.replace(config, start_epoch=start_epoch)
    try:
        loop.run(engine, method, forget, retain, collate, config, ref_model=ref_model,
                 ref_nll=ref_nll if method.needs_ref_nll else None, device=device, on_epoch_end=on_epoch_end)
    except loop.Diverged as error:
        # Every rank sees the same all-reduced loss, so every rank stops here and reports once more.
        metrics = {"status": "diverged", "error": str(error), "method": cfg["method"], "final": True,
                   "epoch": max(1, math.ceil(engine.global_steps / math.ceil(len(forget) / effective))),
                   "step": engine.global_steps, "wall_s": time.time() - started, **topology}
        if rank == 0:
            _record(cfg, metrics)
        ray.train.report(metrics)
    _teardown(ds_engine, dist)


def _record(cfg: dict, metrics: dict) -> None:
    """Append the epoch's row to the trial's own record (durable, whatever Tune does on restore)."""
    import json

    if not cfg.get("record"):
        return
    row = dict(metrics, trial_id=cfg.get("trial_id"), timestamp=time.time())
    Path(cfg["record"]).parent.mkdir(parents=True, exist_ok=True)
    with open(cfg["record"], "a") as f:
        f.write(json.dumps(row, default=str) + "\n")


FINAL = "final_report.json"  # beside the record: how long the last report took to persist the model


def _note(cfg: dict, **values) -> None:
    import json

    if cfg.get("record"):
        (Path(cfg["record"]).parent / FINAL).write_text(json.dumps(values))


def _staging_dir() -> str | None:
    """Where a checkpoint is written before it is reported: beside the run's checkpoints when the
    storage is a path (a shared mount included), so that persisting it is a rename, not a copy;
    else the local temporary directory."""
    import ray.train

    storage = ray.train.get_context().get_storage()
    if storage.storage_filesystem.type_name != "local":
        return None
    path = os.path.join(storage.experiment_fs_path, ".staging")
    os.makedirs(path, exist_ok=True)
    return path


def _move_checkpoint(checkpoint, name: str):
    """Ray Train's upload step: move the files into the checkpoint directory (every rank's files
    land in the same one, as Ray's own copy merges them); copy only across filesystems."""
    import shutil

    import ray.train

    storage = ray.train.get_context().get_storage()
    if storage.storage_filesystem.type_name != "local":
        return storage.persist_current_checkpoint(checkpoint, name)
    dest = storage.build_checkpoint_path_from_name(name)
    for folder, _, files in os.walk(checkpoint.path):
        target = os.path.join(dest, os.path.relpath(folder, checkpoint.path))
        os.makedirs(target, exist_ok=True)
        for file in files:  # a rename on one filesystem
            shutil.move(os.path.join(folder, file), os.path.join(target, file))
    return ray.train.Checkpoint(dest, filesystem=storage.storage_filesystem)


def _resume(ds_engine, checkpoint) -> int:
    """Epochs already done: restore the DeepSpeed state (weights, optimizer, schedule, step) from
    the trial's latest checkpoint when Ray hands one back (a retried worker group or a resumed
    sweep)."""
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        tags = sorted((p.name for p in Path(folder).glob("epoch*") if p.is_dir()), key=lambda t: int(t[5:]))
        if not tags:
            return 0
        ds_engine.load_checkpoint(folder, tag=tags[-1])
        return int(tags[-1][5:])


def _defer_muon_compile() -> None:
    """DeepSpeed's ZeRO code imports its Muon optimizer module even when the optimizer is AdamW (to
    compare classes), and that module's ``@compiler.compile()`` decorators call ``torch.compile`` at
    import, which imports TorchInductor: 1.5 s of each worker's start on CPU. Those decorators (the
    only users of ``compiler.compile``) now compile on the first call instead."""
    import functools

    import torch
    from deepspeed.runtime import compiler

    def on_first_call(fn):
        compiled = None

        @functools.wraps(fn)
        def call(*args, **kwargs):
            nonlocal compiled
            if compiled is None:
                compiled = torch.compile(fn)
            return compiled(*args, **kwargs)
        return call

    compiler.compile = lambda: on_first_call


def _gather_into(ds_engine, evaluator, zero_stage: int) -> None:
    """At ZeRO-3, copy the full weights into rank 0's plain evaluation copy (all ranks take part);
    below it rank 0 evaluates the engine's module itself and there is nothing to copy."""
    import deepspeed
    import torch

    if zero_stage < 3:
        return
    params = list(ds_engine.module.parameters())
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        if evaluator is not None:
            with torch.no_grad():
                for target, source in zip(evaluator.parameters(), params):
                    target.copy_(source.detach().to(target.dtype).view_as(target))


def _teardown(ds_engine, dist) -> None:
    """Without this an async gloo all-gather can outlive the interpreter and abort it."""
    ds_engine.destroy()
    del ds_engine
    gc.collect()
    if dist.is_initialized():
        dist.barrier()
