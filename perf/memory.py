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

    .venv/bin/python perf/memory.py                 # SmolLM2-135M, micro-batch 8 x 256 tokens
    .venv/bin/python perf/memory.py --retain nll    # every method with the nll retain term
    .venv/bin/python perf/memory.py --quick         # smoke check (< 60 s)
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


# --------------------------------------------------------------------------------- the child

def child(args) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from unlearn import loop, lora, methods, models
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
    if args.model == "smollm2":
        from benchmarks.common import default_cache
        from unlearn.pretrained import smollm2

        args.model = str(smollm2(default_cache())[0])
    if args.model == "tiny":
        from transformers import LlamaConfig, LlamaForCausalLM

        t = models.TinyConfig()
        torch.manual_seed(t.seed)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
            num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
            max_position_embeddings=t.max_position_embeddings))
    else:
        model = models.load_model(args.model)[0]
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
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.micro_batch, args.seq, args.steps = "tiny", 2, 64, 1
    args.out = args.out or RESULTS / ("memory-quick.json" if args.quick else "memory.json")
    return args


def ratio(rows: dict, a: str, b: str, key: str) -> float | None:
    if a in rows and b in rows and rows[b]["rss_mib"][key]:
        return round(rows[a]["rss_mib"][key] / rows[b]["rss_mib"][key], 3)
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
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
    record.write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
