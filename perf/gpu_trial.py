"""A sweep's steps on one GPU, in one process, for a machine without Ray: preparation of the target
and the oracle, the references, then one trial per method run by the trial worker's own code
(``sweeps.worker.train_loop``: DeepSpeed ZeRO, bf16, the frozen reference partitioned at stage 3,
checkpoint and evaluation every epoch). Only Ray Train's context is stood in for (one rank; the
reports are kept in memory): the engine, the model, the losses and the evaluation are the trial's.

The model is a Llama built from a config (random weights; nothing is downloaded) with the tokenizer
of a local model directory (``--tokenizer``, e.g. SmolLM2-135M-Instruct's files), saved as a model
directory that the spec's ``model.base`` names. Writes ``perf/results/gpu_trial.json``: each phase's
time, each trial's rows (metrics every epoch), the peak of ``torch.cuda.max_memory_allocated`` per
trial above what was allocated when it began, and the plan's estimate for the same trial.

    python perf/gpu_trial.py --tokenizer DIR                    # cuda:0, SmolLM2-135M's shape
    python perf/gpu_trial.py --tokenizer DIR --size 1b --zero 3
    python perf/gpu_trial.py --tokenizer DIR --device cpu --size tiny --out /tmp/t.json   # smoke check
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import socket
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {  # Llama shapes: tiny (smoke checks), SmolLM2-135M, Llama-3.2-1B (with the tokenizer's vocabulary)
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, tie_word_embeddings=True),
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, tie_word_embeddings=True),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, tie_word_embeddings=True),
}


class TrainContext:
    """Ray Train's context for one rank on this machine (what the trial worker asks of it)."""

    def __init__(self, storage: Path):
        self.storage = storage

    def get_world_rank(self):
        return 0

    def get_world_size(self):
        return 1

    def get_local_rank(self):
        return 0

    def get_local_world_size(self):
        return 1

    def get_storage(self):
        return types.SimpleNamespace(storage_filesystem=types.SimpleNamespace(type_name="memory"))


def stand_in_ray_train(storage: Path, reports: list) -> None:
    """``ray.train`` as one rank without a cluster (and the node it runs on): the reports go to
    ``reports``."""
    train = types.ModuleType("ray.train")
    context = TrainContext(storage)
    train.get_context = lambda: context
    train.get_checkpoint = lambda: None

    class Checkpoint:
        def __init__(self, path, filesystem=None):
            self.path = path

        @classmethod
        def from_directory(cls, path):
            return cls(path)

    def report(metrics, checkpoint=None, checkpoint_upload_fn=None):
        files = sorted(str(p.relative_to(checkpoint.path)) for p in Path(checkpoint.path).rglob("*")) if checkpoint \
            else []
        reports.append({"metrics": metrics, "checkpoint_files": files})

    train.Checkpoint, train.report = Checkpoint, report
    ray = types.ModuleType("ray")
    ray.train = train
    ray.get_runtime_context = lambda: types.SimpleNamespace(get_node_id=lambda: "this-machine")
    ray.util = types.SimpleNamespace(get_node_ip_address=lambda: "127.0.0.1")
    sys.modules["ray"], sys.modules["ray.train"] = ray, train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_base(size: str, tokenizer_dir: str, out: Path, device_type: str) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **SIZES[size])
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def spec_of(base: Path, storage: Path, args):
    from sweeps.spec import from_dict

    gpu = args.device == "cuda"
    return from_dict({
        "name": "gpu-trial",
        "model": {"base": str(base), "prepare": {"lr": 3.0e-4, "max_epochs": args.prepare_epochs, "micro_batch": 8,
                                                 "stop_recall": 0.85, "check_probes": 8}},
        "benchmark": {"name": "synthetic",
                      "params": {"seed": 0, "people": 12, "forget_fraction": 0.2, "facts": 4, "bios": 2}},
        "methods": {"unilogit": {"lr": 1.0e-4, "retain": "nll"}, "undial": {"lr": 1.0e-4, "gamma": 10,
                                                                             "retain": "nll"}},
        "training": {"epochs": 2, "micro_batch": args.micro_batch, "grad_accum": 1, "seeds": [0],
                     "max_length": 256},
        "eval": {"every_epoch": ["likelihood"], "final": ["generation", "likelihood", "verbmem", "kl"],
                 "max_probes": 8, "max_new_tokens": 16, "batch_size": 32},
        "scaling": {"workers": 1, "use_gpu": gpu, "zero_stage": args.zero, "bf16": gpu, "cpus_per_worker": 1},
        "failure": {"max_retries": 0, "checkpoint_every_epoch": True},
        "max_concurrent_trials": 1,
        "storage": str(storage),
    })


def fixed_config(spec, method: str) -> dict:
    """Tune's config of a method whose space has fixed values only (``sweeps.space.param_space``
    without Ray): ``{"method": its own fields, "run": the trial keys and the seed}``."""
    from sweeps.space import method_fields

    own = method_fields(method)
    space = spec.space(method)
    return {"method": {k: v for k, v in space.items() if k in own},
            "run": {**{k: v for k, v in space.items() if k not in own}, "seed": spec.training.seeds[0]}}


def planned(spec, device: str) -> dict:
    """``unlearn plan``'s memory of rank 0 (GiB) per method, for one GPU of this machine's memory,
    without its reserve for the CUDA context and the allocator (which the measured peak excludes)."""
    from sweeps import plan

    if device == "cuda":
        import torch

        node = plan.Node("this GPU", 1, torch.cuda.get_device_properties(0).total_memory, os.cpu_count() or 1, None, 1)
    else:
        node = plan.this_machine()
    return {row["method"]: round(row["rank0_gib"] - row["reserve_gib"], 3) for row in plan.plan(spec, node)["rows"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="a model directory with the tokenizer's files")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--size", default="135m", choices=tuple(SIZES))
    parser.add_argument("--zero", type=int, default=3, choices=(2, 3))
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--prepare-epochs", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "perf" / "results" / "gpu_trial.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("UNLEARN_CACHE", tempfile.mkdtemp(prefix="gpu-trial-cache-"))
    if args.device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1",
                      LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    import torch
    import torch.distributed as dist

    work = Path(tempfile.mkdtemp(prefix="gpu-trial-"))
    reports: list = []
    stand_in_ray_train(work / "runs", reports)
    from sweeps import run
    from sweeps.worker import train_loop

    times, say = {}, (lambda line: print(f"[gpu-trial] {line}", flush=True))
    start = time.perf_counter()
    base = build_base(args.size, args.tokenizer, work / "base", args.device)
    spec = spec_of(base, work / "runs", args)
    times["build"] = time.perf_counter() - start
    sweep_dir = work / "runs" / spec.name
    sweep_dir.mkdir(parents=True)
    benchmark = spec.benchmark.build({})
    from benchmarks.common import default_cache

    data = benchmark.materialize(default_cache() / "benchmarks")
    target, oracle, _ = run.prepare_models(spec, progress=say)[0]
    times["prepare"] = time.perf_counter() - start - sum(times.values())
    cells = [run.Cell({}, dict(spec.benchmark.params), benchmark, target, oracle, data)]
    refs = run.compute_references(sweep_dir, cells, spec, say)
    times["references"] = time.perf_counter() - start - sum(times.values())
    sweep = run.sweep_context(spec, sweep_dir, cells, refs, spec.scaling)
    try:
        estimate = planned(spec, args.device)
    except Exception as error:  # the check goes on; the result says why there is no estimate
        say(f"no plan estimate: {type(error).__name__}: {error}")
        estimate = {}
    dist.init_process_group("nccl" if args.device == "cuda" else "gloo", rank=0, world_size=1)
    trials = {}
    for method in spec.methods:
        trial_dir = sweep_dir / method / "trial-0"
        trial_dir.mkdir(parents=True)
        plan = sweep.trial_plan(method, fixed_config(spec, method), trial_id=f"{method}-0",
                                trial_dir=str(trial_dir), started=time.time())
        gc.collect()
        base = 0
        if args.device == "cuda":  # what an earlier trial of this process left is not this trial's
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        began, first = time.perf_counter(), len(reports)
        train_loop({"plan": plan})
        seconds = time.perf_counter() - began
        rows = [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
        trials[method] = {
            "seconds": round(seconds, 2),
            "allocated_before_gib": round(base / 2 ** 30, 3),
            "peak_allocated_gib": round((torch.cuda.max_memory_allocated() - base) / 2 ** 30, 3)
            if args.device == "cuda" else None,
            "plan_rank0_gib": estimate.get(method),
            "reports": len(reports) - first,
            "final_checkpoint": reports[-1]["checkpoint_files"],
            "rows": [{k: v for k, v in row.items() if isinstance(v, (int, float, str, bool)) or v is None}
                     for row in rows]}
        say(f"{method}: {len(rows)} epochs in {seconds:.1f} s; final {_summary(rows[-1])}")
    dist.destroy_process_group()
    times["trials"] = time.perf_counter() - start - sum(times.values())
    result = {"benchmark": "gpu_trial", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "size": args.size,
              "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
              "torch": torch.__version__, "deepspeed": __import__("deepspeed").__version__,
              "transformers": __import__("transformers").__version__,
              "spec": run._plain(dataclasses.asdict(spec)), "seconds": {k: round(v, 2) for k, v in times.items()},
              "trials": trials}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    say(f"wrote {args.out}")
    return 0


def _summary(row: dict) -> str:
    keys = [k for k in row if k.startswith(("forget_", "retain_", "kl")) and isinstance(row[k], float)][:4]
    return ", ".join(f"{k}={row[k]:.3f}" for k in keys)


if __name__ == "__main__":
    raise SystemExit(main())
