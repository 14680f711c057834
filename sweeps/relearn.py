"""``eval.relearn``: does the forgetting survive a little fine-tuning? After a trial's final epoch
(once its model and metrics are saved) the unlearned model is fine-tuned with plain NLL on a few
forget examples (``unlearn.relearn``) in the trial's own worker group, with its DeepSpeed engine
(every ZeRO stage), and the forget metrics are evaluated again on the probes those examples do not
cover: ``<metric>_relearned``. The references relearn the target the same way (its row's
``<metric>_relearned``: the baseline). When part of the forget set is held back, the metrics of
the model before relearning on the same held-back probes are ``<metric>_heldout``.

Only the evaluation parts that hold forget metrics are run again (:data:`FORGET_PARTS`, those of
``eval.final``), and only the metrics the benchmark declares with role ``forget`` are kept.
"""

from __future__ import annotations

import time
from typing import Any

from unlearn import relearn
from unlearn.relearn import RelearnConfig
from unlearn.validate import fail

FORGET_PARTS = ("generation", "likelihood", "verbmem")  # where benchmarks compute their forget metrics
RELEARNED, HELDOUT = "_relearned", "_heldout"


def split(data, config: RelearnConfig) -> tuple[relearn.Choice, Any]:
    """The examples to relearn on and the data to score after it: ``data`` itself when the whole
    forget set is relearned, else ``data.with_forget_groups(held-back groups)``."""
    groups = data.forget_groups() if hasattr(data, "forget_groups") else None
    choice = relearn.choose(len(data.forget_examples()), config.examples, groups)
    return choice, data if choice.heldout is None else data.with_forget_groups(choice.heldout)


def check_spec(spec, declared) -> None:
    """A partial relearning needs a benchmark that groups its forget set (``declared``: its
    declaration); one line otherwise."""
    config = spec.eval.relearn
    if config is None or config.examples == relearn.ALL:
        return
    if not declared.forget_groups:
        fail("eval.relearn.examples", f"{relearn.ALL!r}: the {spec.benchmark.name} benchmark cannot say which probes "
             "a forget example covers, so no probe can be held back", config.examples)


def check_data(spec, datasets) -> None:
    """Every grid point's (and unlearning target's) forget set can give what ``eval.relearn`` asks,
    checked in the driver before anything is computed (one line otherwise)."""
    if spec.eval.relearn is None:
        return
    for data in datasets:
        for subject in getattr(data, "targets", None) or [None]:
            split(data if subject is None else data.for_target(subject), spec.eval.relearn)


def parts(final: tuple) -> tuple:
    return tuple(p for p in final if p in FORGET_PARTS)


def directions(metrics, config: RelearnConfig | None) -> dict:
    """The recorded directions of the relearning metrics (those of the forget metrics they measure)."""
    if config is None:
        return {}
    suffixes = (RELEARNED,) if config.examples == relearn.ALL else (RELEARNED, HELDOUT)
    return {f"{m.name}{s}": m.direction for m in metrics if m.role == "forget" for s in suffixes}


def forget_scores(benchmark, model, tokenizer, collate, data, refs, config, final: tuple, suffix: str) -> dict:
    """The benchmark's forget metrics of ``model`` on ``data`` (and their standard errors), renamed
    ``<metric><suffix>``; the per-probe scores are left out."""
    forget = [m.name for m in benchmark.metrics(config) if m.role == "forget"]
    scores = benchmark.evaluate(model, tokenizer, collate, data, refs, config, parts(final))
    return {f"{name}{suffix}{tail}": scores[name + tail] for name in forget for tail in ("", "_stderr")
            if name + tail in scores}


def in_worker(plan, worker) -> dict:
    """Every rank of a trial, after its final epoch's checkpoint and evaluation: relearn with the
    trial's engine, then rank 0 scores the held-back probes (the other ranks return ``{}``). The
    optimizer restarts from fresh moments at ``lr``, without the trial's schedule; the batch, the
    clipping and the weights that train (a LoRA trial's adapters) are the trial's."""
    import torch

    from sweeps.worker import _gather_into
    from unlearn import loop, lora

    config, data, first = plan.eval.relearn, worker.data, worker.place.rank == 0
    began = time.time()
    choice, heldout = split(data.dataset, config)

    def score(suffix: str) -> dict:
        torch.set_num_threads(worker.place.eval_threads)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=plan.evaluation.autocast):
            out = forget_scores(data.benchmark, lora.adapted(worker.evaluator), worker.tokenizer, data.collate,
                                heldout, data.refs, plan.evaluation, plan.eval.final, suffix)
        torch.set_num_threads(worker.place.threads)
        return out

    out = {"relearn_examples": len(choice.indices), "relearn_steps": config.steps, "relearn_lr": config.lr,
           "relearn_heldout_groups": len(choice.heldout or ())}
    if first and choice.heldout is not None:  # the unlearned model on the probes scored after relearning
        out.update(score(HELDOUT))
    ds_engine = worker.ds_engine
    relearn.reset_optimizer(ds_engine.optimizer, config.lr)
    ds_engine.lr_scheduler = None  # a constant rate; the trial's schedule is over
    try:
        relearn.relearn(worker.engine, [data.forget[i] for i in choice.indices], data.collate, config,
                        micro_batch=plan.run.micro_batch, device=worker.place.device)
    except loop.Diverged as error:  # every rank sees the same reduced loss
        return {**out, "relearn_error": str(error)} if first else {}
    _gather_into(ds_engine, worker.evaluator, plan.run.zero_stage)
    if not first:
        return {}
    out.update(score(RELEARNED))
    out["relearn_s"] = round(time.time() - began, 3)
    return out


def for_target(spec, benchmark, target, data, refs, config, collate) -> dict:
    """The target's relearning baseline (in the references' task): a fresh copy of the target
    relearned on the same examples, in the spec's effective batch (``micro_batch × grad_accum ×
    workers``, accumulated on one process), with its clipping and weight decay; its forget metrics
    ``<metric>_relearned`` (and ``<metric>_heldout`` before relearning when part is held back)."""
    import torch

    from sweeps.run import load_like_a_trial
    from unlearn import loop
    from unlearn.engine import PlainEngine

    relearning = spec.eval.relearn
    choice, heldout = split(data, relearning)
    model, tokenizer = load_like_a_trial(target, spec)
    out = {"relearn_examples": len(choice.indices), "relearn_steps": relearning.steps, "relearn_lr": relearning.lr,
           "relearn_heldout_groups": len(choice.heldout or ())}
    final = spec.eval.final
    if choice.heldout is not None:
        out.update(forget_scores(benchmark, model.eval(), tokenizer, collate, heldout, refs, config, final, HELDOUT))
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=relearning.lr, weight_decay=spec.training.weight_decay)
    engine = PlainEngine(model, optimizer, accumulation_steps=spec.training.grad_accum * spec.scaling.workers,
                         max_grad_norm=spec.training.grad_clip)
    examples = data.forget_examples()
    try:
        relearn.relearn(engine, [examples[i] for i in choice.indices], collate, relearning,
                        micro_batch=spec.training.micro_batch, device=next(model.parameters()).device)
    except loop.Diverged as error:
        return {**out, "relearn_error": str(error)}
    out.update(forget_scores(benchmark, model.eval(), tokenizer, collate, heldout, refs, config, final, RELEARNED))
    return out
