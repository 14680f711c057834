"""Peak memory of one worker per unlearning method (GA, NPO, UnDIAL, UnDIAL with LoRA, Unilogit).

Each method runs in a fresh subprocess so that peaks do not mix. The subprocess loads the model
(fp32), builds AdamW and materialises its state, does what the method needs before training (NPO:
the reference NLLs, computed once with the same model; UnDIAL: a live frozen copy of the model),
then records its RSS ("set-up") and resets the peak (/proc/self/clear_refs) and runs `--steps`
optimizer steps of our loop (`unlearn.loop.run`, `PlainEngine`). A method written `name+lora`
trains LoRA adapters (`unlearn.lora`, its defaults: r 8 on every linear layer but the output one):
AdamW holds the adapters only, and the frozen reference is the same model with its adapters
disabled (`unlearn.lora.Reference`), no copy. Reported: the step's peak RSS
minus the set-up RSS, the total peak, and the torch allocator view: the peak of tensor bytes
allocated during one more step (a dispatch-mode counter on CPU, `torch.cuda.max_memory_allocated`
on a GPU). Writes perf/results/memory.json (memory-quick.json with --quick).

`--zero3 1,2` measures instead UnDIAL's frozen reference under ZeRO-3, per worker, on gloo groups of
1 and then 2 fresh CPU processes: each rank builds it as a trial's worker does (a deep copy of the
loaded model, `sweeps.worker.partitioned`); its RSS and USS after it is built and the unpartitioned
copy freed, minus before (after gc and malloc_trim), beside what its tensors hold (the partitions,
`p.ds_tensor`, and the whole parameters it keeps: those under DeepSpeed's persistence threshold);
then the peak RSS of two of its forward passes on the micro-batch, and, in a third, the whole
parameters present at once. Recorded as `zero3_reference` in the same file, beside the methods'.

    .venv/bin/python perf/memory.py                 # SmolLM2-135M, micro-batch 8 x 256 tokens
    .venv/bin/python perf/memory.py --retain nll    # every method with the nll retain term
    .venv/bin/python perf/memory.py --quick         # smoke check (< 60 s)
    .venv/bin/python perf/memory.py --zero3 1,2     # the ZeRO-3 reference per worker, 1 and 2 workers
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import datetime as dt
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import record  # noqa: E402  (perf/record.py, beside this file)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "perf" / "results"
METHODS = ("ga", "npo", "undial", "undial+lora", "unilogit")
MIB = 2 ** 20


# ----------------------------------------------------------------------------- process memory

def rss() -> int:
    """Current resident set size, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """Peak resident set size since start or the last reset_peak(), bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def uss() -> int | None:
    """Current unique set size (the pages only this process maps), bytes; None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_full_info().uss


def load(name: str):
    """(model in fp32, its directory or "tiny"): SmolLM2-135M-Instruct from the local cache, the tiny
    preset built in-process, or a model directory."""
    import torch

    from unlearn import models

    if name == "smollm2":
        from benchmarks.common import default_cache
        from unlearn.pretrained import smollm2

        name = str(smollm2(default_cache())[0])
    if name != "tiny":
        return models.load_model(name)[0], name
    from transformers import LlamaConfig, LlamaForCausalLM

    t = models.TinyConfig()
    torch.manual_seed(t.seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
        max_position_embeddings=t.max_position_embeddings)), name


# --------------------------------------------------------------------------------- the child

def child(args) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from unlearn import loop, lora, methods
    from unlearn import step as steps
    from unlearn.engine import PlainEngine

    class LiveBytes(TorchDispatchMode):
        """Peak bytes of tensor storages created inside the mode and still alive."""

        def __init__(self):
            super().__init__()
            self.live: dict[int, tuple[StorageWeakRef, int]] = {}
            self.now = self.peak = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
                      if isinstance(t, torch.Tensor)}
            out = func(*args, **(kwargs or {}))
            for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
                self.now -= self.live.pop(key)[1]
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    storage = t.untyped_storage()
                    key = storage.data_ptr()
                    if key and key not in self.live and key not in inputs:  # views and in-place: no new bytes
                        self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                        self.now += storage.nbytes()
            self.peak = max(self.peak, self.now)
            return out

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    start = time.perf_counter()
    rss_imports = rss()
    model, args.model = load(args.model)
    name, _, variant = args.child.partition("+")
    if variant not in ("", "lora"):
        raise SystemExit(f"memory.py: {args.child}: a method, or a method+lora")
    if variant:
        model = lora.apply(model, lora.LoraConfig())
    model = model.to(args.device).train()
    rss_model = rss()
    params = {"retain": args.retain}
    method = methods.make(name, params)
    vocab, mb, seq = model.config.vocab_size, args.micro_batch, args.seq
    n = mb * (args.steps + 1)
    from step import collate, examples  # perf/step.py, beside this file: the same random token data

    forget, retain = examples(n, seq, vocab, seed=0), examples(n, seq, vocab, seed=1)

    # AdamW state materialised with zero gradients (no weight decay: the weights stay θ0); this also
    # makes every weight page resident, so the reference copy below is measured on its own.
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-6, weight_decay=0.0)
    for p in trained:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():  # the frozen weights (LoRA) made resident as the trained ones are by the step above
        for p in model.parameters():
            if not p.requires_grad:
                p.mul_(1)
    trim()
    ref_model, ref_nll, ref_bytes = None, None, 0
    if method.needs_ref_model:
        before = torch.cuda.memory_allocated() if cuda else rss()
        ref_model = lora.Reference(model) if variant else copy.deepcopy(model).eval().requires_grad_(False)
        ref_bytes = (torch.cuda.memory_allocated() if cuda else rss()) - before
    if method.needs_ref_nll:
        model.eval()
        ref_nll = steps.reference_sequence_nll(model, forget, collate, batch_size=mb, device=args.device)
        model.train()
    engine = PlainEngine(model, optimizer)
    config = loop.LoopConfig(epochs=1, micro_batch=mb, shuffle=False)
    trim()
    rss_setup = rss()
    reset_ok = reset_peak()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_setup = torch.cuda.memory_allocated()
    step_start = time.perf_counter()
    loop.run(engine, method, forget[: args.steps * mb], retain, collate, config, ref_model=ref_model,
             ref_nll=ref_nll, device=args.device)
    step_s = (time.perf_counter() - step_start) / args.steps
    peak = peak_rss()
    result = {
        "method": args.child, "params": method.params(), "device": args.device,
        "shape": f"micro-batch {mb} x {seq} tokens" + (" + a retain batch of that shape" * method.uses_retain),
        "parameters": sum(p.numel() for p in model.parameters()), "trainable": lora.trainable(model),
        "lora": bool(variant), "vocab": vocab,
        "steps": args.steps, "seconds_per_step": round(step_s, 2),
        "rss_mib": {"after_imports": round(rss_imports / MIB), "after_model": round(rss_model / MIB),
                    "setup": round(rss_setup / MIB), "peak": round(peak / MIB),
                    "step_peak_minus_setup": round((peak - rss_setup) / MIB)},
        "peak_reset": reset_ok,
        "reference_model_mib": round(ref_bytes / MIB) if ref_model is not None else None,
    }
    if cuda:
        result["cuda_mib"] = {"setup_allocated": round(cuda_setup / MIB),
                              "peak_allocated": round(torch.cuda.max_memory_allocated() / MIB),
                              "step_peak_minus_setup": round((torch.cuda.max_memory_allocated() - cuda_setup) / MIB),
                              "peak_reserved": round(torch.cuda.max_memory_reserved() / MIB)}
    elif args.allocator:
        tracker = LiveBytes()
        before_optimizer = []
        optimizer.register_step_pre_hook(lambda *_: before_optimizer.append(tracker.peak))
        more = forget[args.steps * mb:(args.steps + 1) * mb]
        with tracker:
            loop.run(engine, method, more, retain, collate, config, ref_model=ref_model, ref_nll=ref_nll,
                     device=args.device)
        result["allocator_mib"] = {"step_peak_tensor_bytes": round(tracker.peak / MIB, 1),
                                   "forward_backward_peak": round(before_optimizer[0] / MIB, 1)}
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


# ------------------------------------------------------------ one rank of a ZeRO-3 reference group

def reference_held(module) -> dict:
    """What the partitioned reference holds on this rank, by its tensors: the bytes of its partitions
    (``p.ds_tensor``), of the whole parameters it keeps (``p.data``: those under DeepSpeed's
    persistence threshold once gathered; a released parameter's is empty), and of the whole model."""
    partitions = kept = whole = persistent = 0
    for p in module.parameters():
        size = p.element_size()
        partitions += p.ds_tensor.numel() * size
        kept += p.data.numel() * size
        whole += p.ds_numel * size
        persistent += p.ds_numel * size if p.ds_persist else 0
    return {"partitions_mib": round(partitions / MIB, 2), "whole_params_kept_mib": round(kept / MIB, 2),
            "held_mib": round((partitions + kept) / MIB, 2), "model_mib": round(whole / MIB, 2),
            "persistent_params_mib": round(persistent / MIB, 2)}


def zero3_rank(args) -> dict:
    """One rank of a gloo group of ``args.world`` CPU processes: the frozen reference built as a
    ZeRO-3 trial's worker builds UnDIAL's (a deep copy of the loaded model in eval mode, partitioned
    by ``sweeps.worker.partitioned``), its memory read before and after, then two of its forward passes."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.port), RANK=str(args.rank),
                      WORLD_SIZE=str(args.world), LOCAL_RANK=str(args.rank), LOCAL_WORLD_SIZE=str(args.world),
                      DS_ACCELERATOR="cpu")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads or 1)
    import deepspeed  # noqa: F401  (imported before the first reading, as at a worker's start)
    import torch.distributed as dist
    from step import collate, examples  # perf/step.py, beside this file: the same random token data

    from sweeps.worker import partitioned
    from unlearn.step import reference_logits

    def mib(value: int | None) -> float | None:
        return None if value is None else round(value / MIB, 1)

    dist.init_process_group("gloo", rank=args.rank, world_size=args.world)
    model, _ = load(args.model)
    with torch.no_grad():  # every weight page resident, so that the copy below is measured on its own
        for p in model.parameters():
            p.mul_(1)
    batch = collate(examples(args.micro_batch, args.seq, model.config.vocab_size, seed=args.rank))
    # The trained model's forward first: the process's one-off allocations of a first forward are then
    # in the baseline, and its peak is the yardstick for the reference's forward (the same batch).
    trim()
    base = rss()
    reset_peak()
    expected = reference_logits(model, batch)[:, -4:].clone()
    whole_forward = peak_rss() - base
    trim()
    before, before_uss = rss(), uss()
    reset_peak()
    dist.barrier()
    ref = partitioned(copy.deepcopy(model).eval(), args.micro_batch, 1, args.world, bf16=False,
                      device=torch.device("cpu"))
    build_peak = peak_rss() - before
    trim()
    after, after_uss = rss(), uss()
    held = reference_held(ref.module)
    forwards = []
    for _ in range(2):  # the first forward records DeepSpeed's trace; later ones prefetch along it
        trim()
        start = rss()
        reset_peak()
        logits = reference_logits(ref, batch)
        forwards.append({"peak_over_before_mib": mib(peak_rss() - start),
                         "max_abs_diff": float((logits[:, -4:] - expected).abs().max())})
        del logits
    # A third forward counts the whole parameters present at once (gathered, or kept under the
    # persistence threshold) at every module's entry and exit. Its hooks are not on the two above:
    # hooks on every module raised their peak RSS.
    params = list(ref.module.parameters())
    gathered = [0]

    def count(*_):
        gathered[0] = max(gathered[0], sum(p.data.numel() * p.element_size() for p in params))

    hooks = [h for m in ref.module.modules()
             for h in (m.register_forward_pre_hook(count), m.register_forward_hook(count))]
    reference_logits(ref, batch)
    for h in hooks:
        h.remove()
    forwards.append({"whole_params_peak_mib": mib(gathered[0])})
    trim()
    after_forward, after_forward_uss = rss(), uss()
    result = {
        "rank": args.rank, "world": args.world, "parameters": sum(p.ds_numel for p in ref.module.parameters()),
        "persistent_parameters": sum(int(p.ds_persist) for p in ref.module.parameters()),
        "parameter_tensors": sum(1 for _ in ref.module.parameters()),
        "persistence_threshold": ref.zero_param_persistence_threshold(),
        "rss_mib": {"before": mib(before), "after_partitioning": mib(after), "after_forwards": mib(after_forward)},
        "reference_rss_mib": mib(after - before), "reference_uss_mib": mib(None if before_uss is None
                                                                          else after_uss - before_uss),
        "reference_rss_after_forwards_mib": mib(after_forward - before),
        "reference_uss_after_forwards_mib": mib(None if before_uss is None else after_forward_uss - before_uss),
        "build_peak_over_before_mib": mib(build_peak), "peak_reset": reset_peak(),
        "structural": held, "structural_after_forwards": reference_held(ref.module),
        "whole_model_forward_peak_mib": mib(whole_forward), "reference_forwards": forwards,
    }
    ref.destroy()
    dist.barrier()
    dist.destroy_process_group()
    return result


# -------------------------------------------------------------------------------- the parent

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2", help="smollm2 (default), tiny or a model directory")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    p.add_argument("--retain", default="none", choices=("none", "nll"), help="retain term of every method")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps measured")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-allocator", dest="allocator", action="store_false",
                   help="skip the dispatch-mode count of tensor bytes on CPU (one more step per method)")
    p.add_argument("--quick", action="store_true", help="tiny model, micro-batch 2 x 64 tokens, 1 step: a smoke check")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--zero3", metavar="WORLDS", default=None,
                   help="instead of the methods: UnDIAL's frozen reference partitioned by ZeRO-3 over gloo groups "
                        "of these sizes on CPU, e.g. 1,2 (recorded beside the methods' figures)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--zero3-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--rank-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.micro_batch, args.seq, args.steps = "tiny", 2, 64, 1
    args.out = args.out or RESULTS / ("memory-quick.json" if args.quick else "memory.json")
    return args


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mean(rows: list[dict], *keys) -> float | None:
    """The mean over the ranks' rows of the value at ``keys`` (None if a rank has none)."""
    values = []
    for row in rows:
        for key in keys:
            row = row[key]
        values.append(row)
    return None if None in values else round(sum(values) / len(values), 2)


ZERO3_FIGURES = {  # name: where it is in a rank's row
    "reference_rss_mib": ("reference_rss_mib",), "reference_uss_mib": ("reference_uss_mib",),
    "reference_rss_after_forwards_mib": ("reference_rss_after_forwards_mib",),
    "structural_held_mib": ("structural", "held_mib"), "structural_partitions_mib": ("structural", "partitions_mib"),
    "structural_held_after_forwards_mib": ("structural_after_forwards", "held_mib"),
    "first_forward_peak_mib": ("reference_forwards", 0, "peak_over_before_mib"),
    "second_forward_peak_mib": ("reference_forwards", 1, "peak_over_before_mib"),
    "forward_whole_params_peak_mib": ("reference_forwards", 2, "whole_params_peak_mib"),
    "whole_model_forward_peak_mib": ("whole_model_forward_peak_mib",),
    "build_peak_mib": ("build_peak_over_before_mib",),
}


def zero3_group(args, world: int) -> list[dict]:
    """The ranks' rows of one gloo group of ``world`` fresh processes (:func:`zero3_rank`)."""
    import tempfile

    forwarded = ["--model", args.model, "--micro-batch", str(args.micro_batch), "--seq", str(args.seq),
                 "--world", str(world), "--port", str(free_port())]
    forwarded += ["--threads", str(args.threads)] if args.threads else []
    with tempfile.TemporaryDirectory() as tmp:
        logs = [open(Path(tmp, f"{i}.log"), "w") for i in range(world)]
        ranks = [subprocess.Popen([sys.executable, __file__, "--zero3-rank", str(i), "--rank-out", tmp, *forwarded],
                                  stdout=log, stderr=subprocess.STDOUT) for i, log in enumerate(logs)]
        codes = [rank.wait() for rank in ranks]
        for log in logs:
            log.close()
        if any(codes):
            for i in range(world):
                sys.stderr.write(Path(tmp, f"{i}.log").read_text()[-4000:])
            raise SystemExit(f"memory.py: the ZeRO-3 group of {world} failed (exits {codes})")
        return [json.loads(Path(tmp, f"{i}.json").read_text()) for i in range(world)]


def zero3(args) -> dict:
    """UnDIAL's frozen reference partitioned by ZeRO-3 over gloo groups of each size in ``args.zero3``:
    per rank, what it holds measured (RSS and USS) and counted (its tensors), and ratios to the first size."""
    worlds = [int(w) for w in args.zero3.split(",")]
    groups, per_rank = {}, {}
    for world in worlds:
        rows = zero3_group(args, world)
        groups[str(world)] = rows
        per_rank[str(world)] = {name: mean(rows, *keys) for name, keys in ZERO3_FIGURES.items()}
        f = per_rank[str(world)]
        print(f"[memory] ZeRO-3 reference, {world} worker(s): per rank RSS +{f['reference_rss_mib']} MiB, "
              f"USS +{f['reference_uss_mib']} MiB, partitions and kept parameters {f['structural_held_mib']} MiB",
              flush=True)
    first = str(worlds[0])
    ratios = {}
    for world in worlds[1:]:
        ratios[f"{world}/{first}"] = {
            name: round(per_rank[str(world)][name] / per_rank[first][name], 3)
            if per_rank[str(world)][name] is not None and per_rank[first][name] else None
            for name in ZERO3_FIGURES if name != "whole_model_forward_peak_mib"}
    row = groups[first][0]
    model = row["structural"]["model_mib"]
    persistent = row["structural"]["persistent_params_mib"]
    return {
        "what": "the frozen reference a ZeRO-3 UnDIAL trial's worker builds (sweeps.worker.partitioned over a gloo "
                "group, CPU, fp32), per rank: RSS and USS after it was built and the unpartitioned copy freed, "
                "minus before (after gc and malloc_trim); its partitions and the whole parameters it keeps, "
                "counted from its tensors; the peak RSS of its forward passes on micro-batch "
                f"{args.micro_batch} x {args.seq} over the RSS before each, beside the trained model's own",
        "model": args.model, "micro_batch": args.micro_batch, "seq": args.seq, "threads_per_rank": args.threads or 1,
        "worlds": worlds, "model_mib": model, "persistent_params_mib": persistent,
        "persistence_threshold": row["persistence_threshold"],
        # every parameter is cut into `world` partitions; those under the persistence threshold are
        # gathered whole at the first forward and kept (their partition too)
        "expected_structural_ratio": {f"{w}/{first}": {
            "before_forwards": round(worlds[0] / w, 4),
            "after_forwards": round((model / w + persistent) / (model / worlds[0] + persistent), 4)}
            for w in worlds[1:]},
        "notes": "On a group of one DeepSpeed gathers nothing: the whole parameters of a forward are views on the "
                 "rank's own partitions, so forward_whole_params_peak_mib costs no bytes there; on more ranks they "
                 "are gathered copies (the prefetch bucket and the parameters in use) released after use.",
        "per_rank": per_rank, "ratios": ratios, "ranks": groups,
    }


def merge(out: Path, result: dict, part: str | None = None) -> dict:
    """``result`` with what ``out`` already holds of the other part: the methods' run keeps a recorded
    ZeRO-3 part and the ZeRO-3 part (``part``) is added to the recorded methods."""
    try:
        old = json.loads(Path(out).read_text())
    except (OSError, ValueError):
        old = {}
    if part is None:
        return {**result, **({"zero3_reference": old["zero3_reference"]} if "zero3_reference" in old else {})}
    return {**old, **result}


def ratio(rows: dict, a: str, b: str, key: str) -> float | None:
    if a in rows and b in rows and rows[b]["rss_mib"][key]:
        return round(rows[a]["rss_mib"][key] / rows[b]["rss_mib"][key], 3)
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.zero3_rank is not None:
        args.rank = args.zero3_rank
        Path(args.rank_out, f"{args.rank}.json").write_text(json.dumps(zero3_rank(args)))
        return 0
    if args.zero3:
        return main_zero3(args)
    forwarded = ["--model", args.model, "--micro-batch", str(args.micro_batch), "--seq", str(args.seq),
                 "--retain", args.retain, "--steps", str(args.steps), "--device", args.device]
    forwarded += ["--threads", str(args.threads)] if args.threads else []
    forwarded += [] if args.allocator else ["--no-allocator"]
    rows = {}
    for name in args.methods.split(","):
        done = subprocess.run([sys.executable, __file__, "--child", name, *forwarded], capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"memory.py: {name} failed (exit {done.returncode})")
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
        r = rows[name]["rss_mib"]
        print(f"[memory] {name}: step peak - set-up {r['step_peak_minus_setup']} MiB, total peak {r['peak']} MiB",
              flush=True)
    first = next(iter(rows.values()))
    ratios = {f"{a}/ga": {"step_peak_minus_setup": ratio(rows, a, "ga", "step_peak_minus_setup"),
                          "peak": ratio(rows, a, "ga", "peak")} for a in rows if a != "ga" and "ga" in rows}
    for a in rows:  # a method with LoRA against the same method with every weight trained
        full = a.partition("+")[0]
        if a != full and full in rows:
            keys = ("setup", "step_peak_minus_setup", "peak")
            ratios[f"{a}/{full}"] = {key: ratio(rows, a, full, key) for key in keys}
    for a in ratios:
        name, base = a.split("/")
        if base == "ga" and "allocator_mib" in rows[name] and "allocator_mib" in rows.get("ga", {}):
            for key in ("step_peak_tensor_bytes", "forward_backward_peak"):
                ratios[a][f"allocator_{key}"] = round(rows[name]["allocator_mib"][key]
                                                      / max(0.1, rows["ga"]["allocator_mib"][key]), 3)
    result = {
        "benchmark": "memory", "quick": args.quick,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": record.machine(),
        "model": args.model, "parameters": first["parameters"], "dtype": "float32", "device": args.device,
        "micro_batch": args.micro_batch, "seq": args.seq,
        "shape": f"micro-batch {args.micro_batch} x {args.seq} tokens", "retain": args.retain, "steps": args.steps,
        "optimizer": "torch.optim.AdamW, weight_decay 0 (state materialised in set-up)",
        "targets": {"npo/ga": 1.1, "unilogit/ga": 1.05}, "ratios": ratios, "methods": rows,
    }
    print(f"\npeak memory of one worker: {args.model}, {result['shape']} (retain: {args.retain}), {args.device}, fp32")
    print(f"{'method':<9} {'set-up MiB':>10} {'peak MiB':>9} {'peak-set-up':>11} {'tensors MiB':>11} "
          f"{'fwd+bwd':>8} {'ref model':>9}")
    for name, r in rows.items():
        m = r["rss_mib"]
        alloc = r.get("allocator_mib") or {}
        tensors = (r.get("cuda_mib") or {}).get("step_peak_minus_setup", alloc.get("step_peak_tensor_bytes", "-"))
        fwd_bwd = alloc.get("forward_backward_peak", "-")
        print(f"{name:<9} {m['setup']:>10} {m['peak']:>9} {m['step_peak_minus_setup']:>11} {tensors:>11} {fwd_bwd:>8} "
              f"{r['reference_model_mib'] if r['reference_model_mib'] is not None else '-':>9}")
    for name, values in ratios.items():
        print(f"{name:<12} " + ", ".join(f"{k} {v}" for k, v in values.items()))
    record.write(merge(args.out, result), args.out)
    return 0


def main_zero3(args) -> int:
    part = zero3(args)
    print(f"\nUnDIAL's frozen reference under ZeRO-3, per rank: {args.model}, fp32, CPU, gloo "
          f"(forward passes on micro-batch {args.micro_batch} x {args.seq})")
    print(f"{'workers':<8} {'RSS MiB':>8} {'USS MiB':>8} {'tensors':>8} {'after fwd':>9} {'fwd peak':>9} "
          f"{'whole fwd':>9}")
    for world, f in part["per_rank"].items():
        print(f"{world:<8} {f['reference_rss_mib']:>8} {f['reference_uss_mib']!s:>8} {f['structural_held_mib']:>8} "
              f"{f['reference_rss_after_forwards_mib']:>9} {f['second_forward_peak_mib']:>9} "
              f"{f['whole_model_forward_peak_mib']:>9}")
    for name, values in part["ratios"].items():
        print(f"{name:<6} " + ", ".join(f"{k.removesuffix('_mib')} {v}" for k, v in values.items()))
    print(f"expected from the tensors: {part['expected_structural_ratio']}")
    stamp = {"benchmark": "memory", "quick": args.quick,
             "zero3_reference": dict(part, date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                     machine=record.machine())}
    record.write(merge(args.out, stamp, "zero3_reference"), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
