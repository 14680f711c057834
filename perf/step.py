"""Training-step efficiency: tokens/s of our unlearning step against a bare PyTorch loop.

"Ours" is `unlearn.loop.run` with `PlainEngine` and the method's losses from `unlearn.losses`;
"bare" is a hand-written loop on a copy of the same model and the same batches: forward, the loss
formula, backward, AdamW step, zero_grad. Both run alternately, block by block (the order flips
every round), so machine noise hits both; ratio = ours / bare tokens/s. Tokens = every input
position that goes through forward and backward (forget + retain batches).

Then the DeepSpeed engine (`sweeps.engine.DeepSpeedEngine` under our loop) on CPU: 1 and 2 workers
x ZeRO 2 and 3, started with torch.multiprocessing, gloo on 127.0.0.1, the same micro-batch per
worker. Writes perf/results/step.json (step-quick.json with --quick).

    .venv/bin/python perf/step.py                 # SmolLM2-135M, micro-batch 8 x 256 tokens
    .venv/bin/python perf/step.py --model tiny    # the tiny preset's shape
    .venv/bin/python perf/step.py --quick         # smoke check (< 60 s)
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import json
import logging
import math
import os
import socket
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import record  # noqa: E402  (perf/record.py, beside this file)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from unlearn import loop, methods  # noqa: E402
from unlearn.engine import PlainEngine  # noqa: E402

RESULTS = ROOT / "perf" / "results"


# ------------------------------------------------------------------------------------ model, data

def load(name: str):
    """The model by name: 'smollm2' (the cached SmolLM2-135M-Instruct), 'tiny' (the tiny preset's
    shape, random weights) or a model directory."""
    from unlearn import models

    if name == "tiny":
        from transformers import LlamaConfig, LlamaForCausalLM

        t = models.TinyConfig()
        torch.manual_seed(t.seed)
        return LlamaForCausalLM(LlamaConfig(
            vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
            num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
            max_position_embeddings=t.max_position_embeddings, tie_word_embeddings=t.tie_word_embeddings))
    if name == "smollm2":
        from benchmarks.common import default_cache
        from unlearn.pretrained import smollm2

        name = str(smollm2(default_cache())[0])
    return models.load_model(name)[0]


def examples(n: int, seq: int, vocab: int, seed: int) -> list[dict]:
    """`n` random sequences of `seq` tokens; the first quarter is a prompt (label -100)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(3, vocab, (seq,), generator=g)
        labels = ids.clone()
        labels[: seq // 4] = -100
        out.append({"input_ids": ids, "labels": labels, "index": i})
    return out


def collate(batch: list[dict]) -> dict:
    ids = torch.stack([e["input_ids"] for e in batch])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.stack([e["labels"] for e in batch]),
            "index": torch.tensor([e["index"] for e in batch])}


def method_of(spec: str):
    """'unilogit+nll' -> Unilogit with the nll retain term; 'ga' -> GA alone."""
    name, _, retain = spec.partition("+")
    if name not in ("ga", "unilogit") or retain not in ("", "nll"):
        raise SystemExit(f"step.py: method must be ga or unilogit, optionally +nll; got {spec!r}")
    return methods.make(name, {"retain": retain or "none"})


# ------------------------------------------------------------------------------------- bare loop

def bare_loss(model, name: str, forget: dict, retain: dict | None) -> torch.Tensor:
    logits = model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
    z = logits[:, :-1].float()
    y = forget["labels"][:, 1:]
    vocab = z.shape[-1]
    if name == "ga":
        loss = -F.cross_entropy(z.flatten(0, 1), y.flatten(), ignore_index=-100)
    else:  # Unilogit: KL(Bern(p_y) || Bern(1/V)) per token, mean over valid tokens
        mask = y != -100
        logp = torch.log_softmax(z, dim=-1)
        a = logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        q = (-torch.expm1(a)).clamp(min=1e-12)
        per = a.exp() * (a + math.log(vocab)) + q * (q.log() + math.log(vocab / (vocab - 1)))
        loss = torch.where(mask, per, torch.zeros_like(per)).sum() / mask.sum()
    if retain is not None:
        r = model(input_ids=retain["input_ids"], attention_mask=retain["attention_mask"]).logits
        loss = loss + F.cross_entropy(r[:, :-1].float().flatten(0, 1), retain["labels"][:, 1:].flatten(),
                                      ignore_index=-100)
    return loss


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -------------------------------------------------------------------------------------- plain

def plain(base, spec: str, forget: list[dict], retain: list[dict], args) -> dict:
    method = method_of(spec)
    name = spec.partition("+")[0]
    uses_retain = method.uses_retain
    ours_model = copy.deepcopy(base).to(args.device)
    bare_model = copy.deepcopy(base).to(args.device)
    engine = PlainEngine(ours_model, torch.optim.AdamW(ours_model.parameters(), lr=args.lr))
    bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=args.lr)
    mb = args.micro_batch
    config = loop.LoopConfig(epochs=1, micro_batch=mb, shuffle=False)
    ours_losses: list[float] = []
    bare_losses: list[torch.Tensor] = []

    def ours(steps: int) -> None:
        loop.run(engine, method, forget[: steps * mb], retain, collate, config, device=args.device,
                 report=lambda m: ours_losses.append(m["loss"]))

    f_batches = [{k: v.to(args.device) for k, v in collate(forget[i * mb:(i + 1) * mb]).items()}
                 for i in range(max(args.steps, args.warmup))]
    r_batches = [{k: v.to(args.device) for k, v in collate(retain[i * mb:(i + 1) * mb]).items()}
                 for i in range(max(args.steps, args.warmup))]

    def bare(steps: int) -> None:
        bare_model.train()
        for i in range(steps):
            loss = bare_loss(bare_model, name, f_batches[i], r_batches[i] if uses_retain else None)
            loss.backward()
            bare_opt.step()
            bare_opt.zero_grad()
            bare_losses.append(loss.detach())

    ours(args.warmup)
    bare(args.warmup)
    sync(args.device)
    first = (ours_losses[0], float(bare_losses[0]))
    tokens = mb * args.seq * (2 if uses_retain else 1) * args.steps
    times: dict[str, list[float]] = {"ours": [], "bare": []}
    for r in range(args.rounds):
        for side in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
            sync(args.device)
            start = time.perf_counter()
            (ours if side == "ours" else bare)(args.steps)
            sync(args.device)
            times[side].append(time.perf_counter() - start)
    tps = {side: tokens * args.rounds / sum(t) for side, t in times.items()}
    paired = [b / o for o, b in zip(times["ours"], times["bare"])]
    last = (ours_losses[-1], float(bare_losses[-1]))
    del engine, ours_model, bare_model, bare_opt
    gc.collect()
    return {
        "method": spec, "params": method.params(),
        "tokens_per_step": tokens // args.steps,
        "tokens_per_s": {"ours": round(tps["ours"], 1), "bare": round(tps["bare"], 1)},
        "ratio": round(tps["ours"] / tps["bare"], 4),
        "ratio_per_round": [round(x, 4) for x in paired],
        "ratio_median": round(statistics.median(paired), 4),
        "seconds_per_block": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "loss_first": {"ours": first[0], "bare": first[1]},
        "loss_last": {"ours": last[0], "bare": last[1]},
        "losses_agree": all(math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-4) for a, b in (first, last)),
    }


# ---------------------------------------------------------------------------------- DeepSpeed

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ds_worker(rank: int, world: int, port: int, threads: int, cfg: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS=str(threads),
                      DS_ACCELERATOR="cpu")
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    import deepspeed
    import torch.distributed as dist

    deepspeed.utils.logger.setLevel(logging.WARNING)

    from sweeps.deepspeed_config import deepspeed_config
    from sweeps.engine import DeepSpeedEngine

    dist.init_process_group("gloo", rank=rank, world_size=world)
    mb, steps, warmup = cfg["micro_batch"], cfg["steps"], cfg["warmup"]
    method = method_of(cfg["method"])
    for zero in cfg["zero_stages"]:
        model = load(cfg["model"])
        vocab = model.config.vocab_size
        forget = examples(mb * world * max(steps, warmup), cfg["seq"], vocab, seed=1)
        retain = examples(mb * world * max(steps, warmup), cfg["seq"], vocab, seed=2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"])
        ds_config = deepspeed_config(micro_batch=mb, grad_accum=1, world_size=world, zero_stage=zero, grad_clip=0)
        start = time.perf_counter()
        ds_engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config,
                                             dist_init_required=False)
        init_s = time.perf_counter() - start
        engine = DeepSpeedEngine(ds_engine)
        config = loop.LoopConfig(epochs=1, micro_batch=mb, shuffle=False)
        loop.run(engine, method, forget[: warmup * mb * world], retain, collate, config)
        dist.barrier()
        start = time.perf_counter()
        state = loop.run(engine, method, forget[: steps * mb * world], retain, collate, config)
        dist.barrier()
        seconds = time.perf_counter() - start
        tokens = mb * cfg["seq"] * (2 if method.uses_retain else 1) * steps
        record = {"rank": rank, "world": world, "zero_stage": zero, "threads": threads, "steps": steps,
                  "seconds": seconds, "init_s": init_s, "tokens": tokens, "tokens_per_s": tokens / seconds,
                  "loss_last": state.metrics.get("loss")}
        Path(out_dir, f"w{world}-z{zero}-r{rank}.json").write_text(json.dumps(record))
        ds_engine.destroy()
        del engine, ds_engine, model, optimizer
        gc.collect()
        dist.barrier()
    dist.destroy_process_group()


def deepspeed_runs(args) -> list[dict]:
    import torch.multiprocessing as mp

    rows = []
    cfg = {"model": args.model, "micro_batch": args.ds_micro_batch or args.micro_batch, "seq": args.seq,
           "steps": args.ds_steps,
           "warmup": args.warmup, "lr": args.lr, "method": args.methods[0], "zero_stages": args.zero}
    for world in args.workers:
        threads = max(1, (args.threads or torch.get_num_threads()) // world)
        with tempfile.TemporaryDirectory(prefix="step-bench-") as out:
            start = time.perf_counter()
            mp.spawn(ds_worker, args=(world, free_port(), threads, cfg, out), nprocs=world, join=True)
            wall = time.perf_counter() - start
            for zero in args.zero:
                ranks = [json.loads(Path(out, f"w{world}-z{zero}-r{r}.json").read_text()) for r in range(world)]
                slowest = max(r["seconds"] for r in ranks)
                total = sum(r["tokens"] for r in ranks)
                rows.append({
                    "workers": world, "zero_stage": zero, "threads_per_worker": threads, "method": cfg["method"],
                    "tokens_per_s": round(total / slowest, 1),
                    "tokens_per_s_per_worker": [round(r["tokens_per_s"], 1) for r in ranks],
                    "seconds": round(slowest, 3), "steps": args.ds_steps,
                    "init_s": round(max(r["init_s"] for r in ranks), 2),
                    "loss_last": ranks[0]["loss_last"], "process_wall_s": round(wall, 1),
                })
    return rows


# ---------------------------------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2", help="smollm2 (default), tiny or a model directory")
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    p.add_argument("--methods", default="unilogit+nll,ga", help="comma-separated: ga, unilogit, with +nll")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds (one block per side each)")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps per block")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per side first")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="device of the plain comparison (DeepSpeed runs on CPU)")
    p.add_argument("--workers", default="1,2", help="DeepSpeed worker counts")
    p.add_argument("--zero", default="2,3", help="DeepSpeed ZeRO stages")
    p.add_argument("--ds-steps", type=int, default=2, help="timed optimizer steps per DeepSpeed configuration")
    p.add_argument("--ds-micro-batch", type=int, default=4,
                   help="micro-batch per DeepSpeed worker (default 4: at 8 x 256 a SmolLM2 worker of the Unilogit "
                        "+ NLL step peaks near 14 GB on CPU, two of them exceed a 24 GB machine)")
    p.add_argument("--no-deepspeed", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny model, 4 x 64 tokens, 1 thread: a smoke check")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.micro_batch, args.seq, args.rounds, args.steps = "tiny", 4, 64, 3, 2
        args.threads = args.threads or 1
    args.methods = args.methods.split(",")
    args.workers = [int(x) for x in args.workers.split(",")]
    args.zero = [int(x) for x in args.zero.split(",")]
    args.out = args.out or RESULTS / ("step-quick.json" if args.quick else "step.json")
    return args


def table(result: dict) -> str:
    lines = [f"plain engine vs bare loop: {result['model']}, micro-batch {result['micro_batch']} x {result['seq']} "
             f"tokens, {result['rounds']} rounds x {result['steps']} steps per side, {result['device']}",
             f"{'method':<14} {'ours tok/s':>11} {'bare tok/s':>11} {'ratio':>7} {'median':>7}  losses agree"]
    for r in result["plain"]:
        lines.append(f"{r['method']:<14} {r['tokens_per_s']['ours']:>11} {r['tokens_per_s']['bare']:>11} "
                     f"{r['ratio']:>7} {r['ratio_median']:>7}  {r['losses_agree']}")
    if result["deepspeed"]:
        lines.append(f"DeepSpeed engine on CPU (gloo), {result['deepspeed'][0]['method']}, micro-batch "
                     f"{result['ds_micro_batch']} x {result['seq']} tokens per worker")
        lines.append(f"{'workers':>7} {'ZeRO':>4} {'threads':>7} {'tok/s':>9}  per worker")
        for r in result["deepspeed"]:
            lines.append(f"{r['workers']:>7} {r['zero_stage']:>4} {r['threads_per_worker']:>7} "
                         f"{r['tokens_per_s']:>9}  {r['tokens_per_s_per_worker']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # DeepSpeed first, while this process holds no model: its workers need the memory.
    ds = [] if args.no_deepspeed else deepspeed_runs(args)
    base = load(args.model).train()
    vocab = base.config.vocab_size
    n = args.micro_batch * max(args.steps, args.warmup)
    forget, retain = examples(n, args.seq, vocab, seed=1), examples(n, args.seq, vocab, seed=2)
    rows = []
    for spec in args.methods:
        rows.append(plain(base, spec, forget, retain, args))
        print(f"[step] {spec}: ours {rows[-1]['tokens_per_s']['ours']} tok/s, bare "
              f"{rows[-1]['tokens_per_s']['bare']} tok/s, ratio {rows[-1]['ratio']}", flush=True)
    params = sum(p.numel() for p in base.parameters())
    del base
    gc.collect()
    result = {
        "benchmark": "step", "quick": args.quick,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": record.machine(),
        "model": args.model, "parameters": params, "dtype": "float32", "device": args.device,
        "micro_batch": args.micro_batch, "ds_micro_batch": args.ds_micro_batch or args.micro_batch,
        "seq": args.seq, "rounds": args.rounds, "steps": args.steps,
        "warmup": args.warmup, "lr": args.lr, "optimizer": "torch.optim.AdamW, no gradient clipping",
        "tokens_per_s": rows[0]["tokens_per_s"]["ours"], "tokens_per_s_method": rows[0]["method"],
        "ratio": rows[0]["ratio"], "target_ratio": 0.97,
        "plain": rows, "deepspeed": ds,
    }
    print(table(result))
    record.write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
