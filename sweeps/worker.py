"""What every Ray Train worker of a trial runs, top to bottom (:func:`train_loop`): set up
(:meth:`Worker.start`: load the target, the data and the references, wrap the model in DeepSpeed),
run the ``unlearn`` loop with an :class:`EpochEnd` after every epoch (checkpoint, evaluate, record,
report), tear down. A :class:`Stopwatch` times it all.

Evaluation is correct under every ZeRO stage: below stage 3 rank 0 evaluates the engine's module
(it holds the full weights); at stage 3 the weights are gathered (``GatheredParameters``) into a
plain copy on rank 0. Rank 0 evaluates while the other ranks wait at the report barrier; every
worker calls ``ray.train.report`` once per epoch and rank 0's metrics reach Tune.
The last epoch's checkpoint is the unlearned model as a Hugging Face directory, without optimizer
state; earlier ones are DeepSpeed checkpoints (Ray keeps only the latest). With ``eval.relearn`` the
model is then attacked by relearning (``sweeps.relearn``), in the same worker group, and the final
row gains its ``<metric>_relearned`` scores; the checkpoint stays the unlearned model.

A LoRA trial (``plan.lora``, ``unlearn.lora``) trains the adapters of a peft model: the optimizer
holds them only, the frozen reference is the same module with its adapters disabled, rank 0
evaluates the adapted model, and checkpoints hold the adapters only (the last one as a peft
adapter directory, ``adapter/``; ``unlearn export`` merges it into the base model).
"""

from __future__ import annotations

import copy
import gc
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import without_probes
from reports.record import ADAPTER, DIVERGED, FINAL_REPORT, MODEL, OK, append_row
from sweeps import faults
from sweeps.cluster import this_node

if TYPE_CHECKING:
    from sweeps.spec import Objective
    from sweeps.trial import TrialPlan


def train_loop(config: dict) -> None:
    """One rank of a trial's worker group (``config``: ``{"plan": TrialPlan}``)."""
    plan: TrialPlan = config["plan"]
    watch = Stopwatch(plan.started)
    # the heavy imports of a worker's start, timed as such (the set-up below uses them)
    import deepspeed  # noqa: F401
    import ray.train  # noqa: F401

    import benchmarks  # noqa: F401
    from unlearn import loop

    watch.lap("imports")
    worker = Worker.start(plan, watch)
    epoch_end = EpochEnd(plan, worker, watch)
    try:
        loop.run(worker.engine, plan.method, worker.data.forget, worker.data.retain, worker.data.collate,
                 worker.loop_config, ref_model=worker.ref_model, ref_nll=worker.data.ref_nll,
                 device=worker.place.device, on_epoch_end=epoch_end)
    except loop.Diverged as error:
        epoch_end.diverged(error)
    worker.close()


class Stopwatch:
    """A worker's timings as named laps: :meth:`lap` adds the seconds since the previous lap to a
    name. Recorded with every epoch's row as ``<name>_s``: ``group_start`` (from the trial's start
    to this worker's first line: the worker group's start), ``imports``, ``load`` (models, data,
    references, optimizer), ``ds_init`` (DeepSpeed's initialisation and the resume), and, summed
    over the epochs so far, ``train``, ``eval`` and ``checkpoint`` (saving and reporting); and
    ``wall_s``, the seconds since the imports."""

    def __init__(self, origin: float | None):
        self.last = time.time()
        self.laps: dict[str, float | None] = {"group_start": self.last - origin if origin else None,
                                              "train": 0.0, "eval": 0.0, "checkpoint": 0.0}
        self.marks: dict[str, float] = {}

    def lap(self, name: str) -> float:
        """Add the seconds since the previous lap (or :meth:`restart`) to ``name``; those seconds."""
        now = time.time()
        seconds = now - self.last
        self.laps[name] = (self.laps.get(name) or 0.0) + seconds
        self.last = self.marks[name] = now
        return seconds

    def restart(self) -> None:
        """The next lap counts from now (what happened since the last lap is not timed)."""
        self.last = time.time()

    def since(self, name: str) -> float:
        return time.time() - self.marks[name]

    def record(self) -> dict:
        laps = {f"{name}_s": None if value is None else round(value, 3) for name, value in self.laps.items()}
        return dict(laps, wall_s=round(self.since("imports"), 3))


# ------------------------------------------------------------------------------------ set up

@dataclass(frozen=True)
class Place:
    """Where this worker runs: its rank in the group, its device, and its CPU threads while training
    and while rank 0 evaluates."""

    rank: int
    world: int
    device: Any
    threads: int
    eval_threads: int

    @classmethod
    def of(cls, scaling) -> Place:
        import ray.train
        import torch

        ctx = ray.train.get_context()
        per_worker = scaling.cpus_per_worker or 1
        threads = max(1, int(per_worker))
        # Rank 0 evaluates while the other ranks on its node wait at the report barrier: on CPU it
        # borrows their cores for that time (about 1.7x faster evaluation with two workers).
        eval_threads = max(threads, round(ctx.get_local_world_size() * per_worker))
        device = torch.device(f"cuda:{ctx.get_local_rank()}") if scaling.use_gpu else torch.device("cpu")
        return cls(ctx.get_world_rank(), ctx.get_world_size(), device, threads, eval_threads)


@dataclass(frozen=True)
class TrialData:
    """The benchmark of the trial's grid point, its data (for its unlearning target) and references."""

    benchmark: Any
    dataset: Any
    collate: Any
    forget: list
    retain: list
    refs: Any
    ref_nll: Any  # NPO's reference NLLs, None for the other methods


def load_data(plan: TrialPlan, tokenizer) -> TrialData:
    import torch

    from unlearn import data as collation
    from unlearn import loop

    point = plan.point
    benchmark = point.build()
    dataset = benchmark.read(point.data_root)
    if point.subject is not None:  # one unlearning target of a multi-target benchmark (RWKU)
        dataset = dataset.for_target(point.subject)
    entry = torch.load(plan.paths.refs, weights_only=False, mmap=True)[point.refs_key]  # pages in what it reads
    collate = collation.Collator(tokenizer, max_length=plan.training.max_length, chat_template=dataset.chat)
    return TrialData(benchmark, dataset, collate, loop.with_index(dataset.forget_examples()), dataset.retain_examples(),
                     entry["refs"], entry["ref_nll"] if plan.method.needs_ref_nll else None)


@dataclass(frozen=True)
class Worker:
    """One rank, set up: its place, the DeepSpeed engine (and the ``unlearn`` engine around it),
    rank 0's evaluation model, the frozen reference model, the data, and the loop's settings with
    the epochs already done (``loop_config.start_epoch``)."""

    place: Place
    ds_engine: Any
    engine: Any
    evaluator: Any
    ref_model: Any
    tokenizer: Any
    data: TrialData
    loop_config: Any
    effective_batch: int
    topology: dict  # recorded with every row: world size, ZeRO stage, batch, device, start epoch

    @classmethod
    def start(cls, plan: TrialPlan, watch: Stopwatch) -> Worker:
        """Load (timed as ``load``), then initialise DeepSpeed and resume (``ds_init``)."""
        import dataclasses

        import ray.train
        import torch

        from sweeps.engine import DeepSpeedEngine
        from unlearn import loop, lora, methods, models

        place = Place.of(plan.scaling)
        torch.set_num_threads(place.threads)
        loop.set_seed(plan.run.seed)
        model, tokenizer = models.load_model(plan.point.model_dir)
        if plan.lora is not None:
            model = lora.apply(model, plan.lora, base=plan.point.model_dir)
        methods.trained_parameters(model, plan.method)  # RMU trains a few MLPs: the rest is frozen
        trainable = lora.trainable(model)
        evaluator, ref_model = _copies(plan, place, model)
        if plan.scaling.gradient_checkpointing:  # after the copies: they only ever run forward
            models.checkpoint_activations(model)
        data = load_data(plan, tokenizer)
        loop_config, effective, optimizer, lr_schedule, ds_config = _training(plan, place, model, len(data.forget))
        watch.lap("load")
        ds_engine = init_deepspeed(place.device, model, optimizer, lr_schedule, ds_config)
        start_epoch, method_state = _resume(ds_engine, ray.train.get_checkpoint(), adapters_only=plan.lora is not None)
        watch.lap("ds_init")
        if place.rank == 0 and evaluator is None:
            evaluator = ds_engine.module
        run = plan.run
        topology = {"world_size": place.world, "zero_stage": run.zero_stage, "micro_batch": run.micro_batch,
                    "grad_accum": run.grad_accum, "effective_batch": effective, "device": str(place.device),
                    "bf16": plan.scaling.bf16, "start_epoch": start_epoch, "trainable_params": trainable,
                    **placement()}
        return cls(place, ds_engine, DeepSpeedEngine(ds_engine), evaluator, ref_model, tokenizer, data,
                   dataclasses.replace(loop_config, start_epoch=start_epoch, method_state=method_state), effective,
                   topology)

    def close(self) -> None:
        """Without this an async gloo all-gather can outlive the interpreter and abort it."""
        import torch.distributed as dist

        self.ds_engine.destroy()
        if hasattr(self.ref_model, "destroy"):  # a ZeRO-3 partitioned reference
            self.ref_model.destroy()
        gc.collect()
        if dist.is_initialized():
            dist.barrier()


def placement() -> dict:
    """Where each rank of the worker group runs, in rank order: ``node_ids`` (Ray node IDs) and
    ``node_ips``. One small all-gather over the group's process group (every rank calls it)."""
    import torch.distributed as dist

    mine = this_node()
    everyone = [mine]
    if dist.is_initialized() and dist.get_world_size() > 1:
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
    return {"node_ids": [n["node_id"] for n in everyone], "node_ips": [n["node_ip"] for n in everyone]}


def _copies(plan: TrialPlan, place: Place, model) -> tuple[Any, Any]:
    """Rank 0's evaluation copy at ZeRO-3 (below it rank 0 evaluates the engine's own module, which
    holds the full weights) and the frozen reference model when the method needs one; each on the
    worker's device, in bf16 when training in bf16 on GPU (the losses upcast its logits). Under LoRA
    the reference is no copy: it is ``model`` itself with its adapters disabled (``lora.Reference``);
    at ZeRO-3 it is partitioned over the worker group like the trained weights (:func:`partitioned`)."""
    import torch

    from unlearn import lora

    def frozen_copy():
        twin = copy.deepcopy(model).eval().to(place.device)
        return twin.to(torch.bfloat16) if plan.scaling.bf16 and plan.scaling.use_gpu else twin

    evaluator = frozen_copy() if place.rank == 0 and plan.run.zero_stage == 3 else None
    if not plan.method.needs_ref_model:
        return evaluator, None
    if plan.lora is not None:
        return evaluator, lora.Reference(model)
    if plan.run.zero_stage == 3:
        return evaluator, partitioned(frozen_copy(), plan.run.micro_batch, plan.run.grad_accum, place.world,
                                      bf16=plan.scaling.bf16 and plan.scaling.use_gpu, device=place.device)
    return evaluator, frozen_copy()


def partitioned(model, micro_batch: int, grad_accum: int, world: int, *, bf16: bool, device):
    """A frozen model partitioned over the worker group by ZeRO-3 (a DeepSpeed engine without an
    optimizer): each rank holds 1/world of its weights and gathers one layer at a time during a
    forward pass, which every rank runs in step (the training loop's micro-batches are the same in
    number on every rank). Its forward returns the module's output, as the model's own does."""
    import deepspeed

    from sweeps import patches

    patches.apply(device.type)
    config = {"train_micro_batch_size_per_gpu": micro_batch, "gradient_accumulation_steps": grad_accum,
              "train_batch_size": micro_batch * grad_accum * world, "zero_optimization": {"stage": 3},
              "steps_per_print": 10 ** 9}
    if bf16:
        config["bf16"] = {"enabled": True}
    for p in model.parameters():
        p.requires_grad_(False)
    engine, *_ = deepspeed.initialize(model=model, config=config, dist_init_required=False)
    engine.eval()
    return engine


def _training(plan: TrialPlan, place: Place, model, forget_examples: int):
    """The loop's settings, the effective batch, the optimizer (over the weights that train: the
    adapters under LoRA), its schedule and DeepSpeed's config."""
    import torch

    from sweeps.deepspeed_config import deepspeed_config
    from unlearn import loop, schedule

    run, training = plan.run, plan.training
    config = loop.LoopConfig(epochs=run.epochs, micro_batch=run.micro_batch, seed=run.seed,
                             group_by_length=training.group_by_length)
    effective = run.micro_batch * run.grad_accum * place.world
    total = loop.total_steps(forget_examples, config, effective)
    trained = [p for p in model.parameters() if p.requires_grad]
    cpu = not plan.scaling.use_gpu
    # fused: one kernel over all tensors (on CPU about a quarter of the default loop's time); on GPU
    # the default (foreach) step also allocates a temporary the size of the weights it updates
    optimizer = torch.optim.AdamW(trained, lr=run.lr, weight_decay=run.weight_decay, fused=True)
    lr_schedule = schedule.scheduler(optimizer, training.schedule, total, min(training.warmup_steps, total))
    ds_config = deepspeed_config(micro_batch=run.micro_batch, grad_accum=run.grad_accum, world_size=place.world,
                                 zero_stage=run.zero_stage, bf16=plan.scaling.bf16, offload=plan.scaling.offload,
                                 grad_clip=training.grad_clip, contiguous_gradients=not cpu)
    return config, effective, optimizer, lr_schedule, ds_config


def init_deepspeed(device, model, optimizer, lr_schedule, ds_config):
    """DeepSpeed's engine around the model, with this device's work-arounds (``sweeps.patches``)
    applied first."""
    import deepspeed

    from sweeps import patches

    patches.apply(device.type)
    ds_engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=lr_schedule,
                                         config=ds_config, dist_init_required=False)
    return ds_engine


def _resume(ds_engine, checkpoint, adapters_only: bool = False) -> tuple[int, dict | None]:
    """Epochs already done and the method's state then (PDU's dual variable): restore the DeepSpeed
    state (weights, optimizer, schedule, step) from the trial's latest checkpoint when Ray hands one
    back (a retried worker group or a resumed sweep). A LoRA trial's checkpoint holds the adapters
    only (``adapters_only``): the frozen weights stay as loaded."""
    if checkpoint is None:
        return 0, None
    with checkpoint.as_directory() as folder:
        tags = sorted((p.name for p in Path(folder).glob("epoch*") if p.is_dir()), key=lambda t: int(t[5:]))
        if not tags:
            return 0, None
        _, client = ds_engine.load_checkpoint(folder, tag=tags[-1], load_module_strict=not adapters_only)
        return int(tags[-1][5:]), (client or {}).get("method_state")


# ------------------------------------------------------------------------------------ epoch end

class EpochEnd:
    """After every epoch, on every rank: checkpoint, evaluate (rank 0; the others wait), after the
    last one relearn when the spec asks (``sweeps.relearn``: every rank), record (rank 0) and
    report. The last epoch's checkpoint is the model (a LoRA trial's: its adapters), written by
    rank 0 before any relearning; earlier ones are DeepSpeed checkpoints (a LoRA trial's: the
    adapters and their optimizer state, with the adapters' config), kept only with
    ``failure.checkpoint_every_epoch``."""

    def __init__(self, plan: TrialPlan, worker: Worker, watch: Stopwatch):
        self.plan, self.worker, self.watch = plan, worker, watch
        self.staging = _staging_dir()
        self.fail_at = faults.from_env()  # the tests' fault hook, None unless asked for

    def __call__(self, epoch: int, state) -> None:
        self.watch.lap("train")
        rank, last = self.worker.place.rank, epoch == self.plan.run.epochs
        if self.fail_at is not None:
            self.fail_at.fire(rank, epoch, self.plan.paths.trial_dir, before=faults.wait_until_registered,
                              node=this_node)
        with tempfile.TemporaryDirectory(dir=self.staging) as tmp:
            kept = self.checkpoint(tmp, epoch, last, state.method_state)
            self.watch.lap("checkpoint")
            metrics = self.evaluate(epoch, last, state) if rank == 0 else {"epoch": epoch}
            if last and self.plan.eval.relearn is not None:  # the model and its scores are saved: now attack it
                from sweeps import relearn

                metrics.update(relearn.in_worker(self.plan, self.worker))
                self.watch.lap("relearn")
            if rank == 0:
                _record(self.plan, metrics)  # the per-probe scores go to the trial's record only, not to Tune
                metrics = without_probes(metrics)
            self.report(metrics, tmp if kept else None, last)
        if last and self.staging:
            try:
                os.rmdir(self.staging)
            except OSError:  # left by another rank's files until they have moved
                pass
        self.watch.restart()

    def checkpoint(self, folder: str, epoch: int, last: bool, method_state: dict | None = None) -> bool:
        """Write this rank's part of the epoch's checkpoint into ``folder`` (with the method's state);
        whether it reports one."""
        from unlearn import lora, models

        worker, keep, adapters = self.worker, self.plan.failure.checkpoint_every_epoch, self.plan.lora is not None
        _gather_into(worker.ds_engine, worker.evaluator, self.plan.run.zero_stage)
        if last and worker.place.rank == 0:
            if adapters:
                lora.save_adapters(worker.evaluator, worker.tokenizer, os.path.join(folder, ADAPTER))
            else:
                models.save_model(worker.evaluator, worker.tokenizer, os.path.join(folder, MODEL))
        elif not last and keep:
            worker.ds_engine.save_checkpoint(folder, tag=f"epoch{epoch}", exclude_frozen_parameters=adapters,
                                             client_state={"method_state": method_state or {}})
            if adapters and worker.place.rank == 0:  # what an export of this checkpoint merges into
                worker.ds_engine.module.peft_config["default"].save_pretrained(folder)
        return (last and worker.place.rank == 0) or (not last and keep)

    def evaluate(self, epoch: int, last: bool, state) -> dict:
        """Rank 0: the epoch's metrics (evaluation, training, topology, timings), per-probe scores
        included (recorded, then left out of the report)."""
        import torch

        from unlearn import lora

        plan, worker, data = self.plan, self.worker, self.worker.data
        parts = plan.eval.final if last else plan.eval.every_epoch
        torch.set_num_threads(worker.place.eval_threads)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=plan.evaluation.autocast):
            scores = data.benchmark.evaluate(lora.adapted(worker.evaluator), worker.tokenizer, data.collate,
                                             data.dataset, data.refs, plan.evaluation, tuple(parts))
        torch.set_num_threads(worker.place.threads)
        self.watch.lap("eval")
        metrics = {"epoch": epoch, **scores, **{k: v for k, v in state.metrics.items() if k != "epoch"},
                   **worker.topology, **self.watch.record(), "status": OK, "final": last,
                   "method": plan.method.name}
        metrics.update(objective_values(metrics, plan))
        return metrics

    def report(self, metrics: dict, folder: str | None, last: bool) -> None:
        """Report the epoch (every rank); persisting the checkpoint counts as ``checkpoint``. The last
        epoch's row is already written, so the last report's time goes to the trial's side record."""
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        self.watch.restart()
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_fn=_move_checkpoint)
        seconds = self.watch.lap("checkpoint")
        if last and self.worker.place.rank == 0:
            _note(self.plan, final_report_s=round(seconds, 3))

    def diverged(self, error: Exception) -> None:
        """Every rank sees the same all-reduced loss, so every rank stops here and reports once more."""
        import ray.train

        worker = self.worker
        steps = worker.engine.global_steps
        per_epoch = math.ceil(len(worker.data.forget) / worker.effective_batch)
        metrics = {"status": DIVERGED, "error": str(error), "method": self.plan.method.name, "final": True,
                   "epoch": max(1, math.ceil(steps / per_epoch)), "step": steps,
                   "wall_s": round(self.watch.since("imports"), 3), **worker.topology}
        metrics.update(objective_values(metrics, self.plan))  # the worst values: the searcher learns from it
        if worker.place.rank == 0:
            _record(self.plan, metrics)
        ray.train.report(metrics)


def objective_value(metrics: dict, objective: Objective | None) -> float | None:
    """The scalar a non-grid search optimises: the metric when every bound holds, else a value
    worse than any admissible one (bounded metrics in this service lie within [-1e3, 1e3])."""
    if objective is None:
        return None
    value = metrics.get(objective.metric, float("nan"))
    feasible = all(
        (bound.get("max") is None or metrics.get(name, math.inf) <= bound["max"])
        and (bound.get("min") is None or metrics.get(name, -math.inf) >= bound["min"])
        for name, bound in objective.subject_to.items())
    if feasible and not math.isnan(value):
        return float(value)
    return -1e6 if objective.mode == "max" else 1e6


def objective_values(metrics: dict, plan: TrialPlan) -> dict:
    """What a trial reports for the search every epoch, under stable keys (``sweeps.search``):
    ``objective`` for one, ``objective_<metric>`` for each of several."""
    from sweeps.search import objective_key

    out = {} if plan.objective is None else {"objective": objective_value(metrics, plan.objective)}
    return dict(out, **{objective_key(o.metric): objective_value(metrics, o) for o in plan.objectives})


def _record(plan: TrialPlan, metrics: dict) -> None:
    """Append the epoch's row to the trial's own record (durable, whatever Tune does on restore)."""
    if plan.paths.trial_dir is not None:
        append_row(Path(plan.paths.trial_dir), dict(metrics, trial_id=plan.trial_id, timestamp=time.time()))


def _note(plan: TrialPlan, **values) -> None:
    path = plan.paths.in_trial(FINAL_REPORT)
    if path is not None:
        path.write_text(json.dumps(values))


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


def _gather_into(ds_engine, evaluator, zero_stage: int) -> None:
    """At ZeRO-3, copy the weights that train (every weight; a LoRA trial's adapters) into rank 0's
    plain evaluation copy (all ranks take part; the frozen ones are there since the copy was made);
    below it rank 0 evaluates the engine's module itself and there is nothing to copy."""
    import deepspeed
    import torch

    if zero_stage < 3:
        return
    trained = [p.requires_grad for p in ds_engine.module.parameters()]
    params = [p for p, grad in zip(ds_engine.module.parameters(), trained) if grad]
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        if evaluator is not None:
            targets = [t for t, grad in zip(evaluator.parameters(), trained) if grad]
            with torch.no_grad():
                for target, source in zip(targets, params):
                    target.copy_(source.detach().to(target.dtype).view_as(target))
