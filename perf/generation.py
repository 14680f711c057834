"""Batched vs one-at-a-time greedy generation: probes/second of `benchmarks.inference.generate`.

The same QA-style probes are generated once per batch (left padding, KV cache, `--batch-size`) and
once prompt by prompt (batch 1); the best of `--repeats` timings is kept for each, the outputs of
both ways are compared, and the numbers go to `perf/results/generation.json`.

    .venv/bin/python perf/generation.py                       # the tiny preset (random weights)
    .venv/bin/python perf/generation.py --model PATH --chat   # a model directory or a .gguf file
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a script without installing the repository

import record  # noqa: E402  (perf/record.py, beside this file)
import torch  # noqa: E402

from benchmarks.inference import generate_detailed  # noqa: E402
from unlearn.models import load_model  # noqa: E402

RESULTS = ROOT / "perf" / "results" / "generation.json"
CITIES = ["Lisbon", "Oslo", "Quito", "Hanoi", "Accra", "Perth", "Bern", "Lima"]
JOBS = ["baker", "pilot", "poet", "nurse", "judge", "chemist"]
QUESTIONS = [
    "Where was {name} born?",
    "What does {name} do for a living?",
    "In which city did {name} grow up, and what was the name of the first school {name} attended?",
    "Who is {name}?",
]


def probes(n: int) -> list[str]:
    """`n` short questions about fictitious people, of varying length (as forget / retain QA)."""
    out = []
    for i in range(n):
        name = f"Person {i} {CITIES[i % len(CITIES)]}son"
        out.append(QUESTIONS[i % len(QUESTIONS)].format(name=name))
    return out


def tiny_corpus(n: int) -> list[str]:
    """Texts to train the tiny preset's tokenizer on: bios and QA pairs of the same people."""
    bios = [f"Person {i} {CITIES[i % len(CITIES)]}son was born in {CITIES[(3 * i) % len(CITIES)]} and "
            f"works as a {JOBS[i % len(JOBS)]}." for i in range(n)]
    return bios + [f"Question: {q}\nAnswer: {b}" for q, b in zip(probes(n), bios)]


def prompts_for(tokenizer, questions: list[str], chat: bool) -> list[str] | list[list[int]]:
    """Plain "Question: …\\nAnswer:" prompts, or chat-template token ids with `chat`."""
    if not chat:
        return [f"Question: {q}\nAnswer:" for q in questions]
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                              tokenize=False) for q in questions]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in rendered]


def best_time(fn, repeats: int) -> tuple[float, list[float], list]:
    """(best seconds, all seconds, the outputs of the last run) of `fn()` over `repeats` runs."""
    times, outputs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = fn()
        times.append(time.perf_counter() - start)
    return min(times), times, outputs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny",
                        help="'tiny' (default), 'smollm2', a model directory or a .gguf file")
    parser.add_argument("--probes", type=int, default=48)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per way; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast")
    parser.add_argument("--chat", action="store_true", help="wrap each probe in the chat template")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    texts = tiny_corpus(args.probes) if args.model == "tiny" else None
    name = args.model
    if name == "smollm2":  # the demo's model, from the cache (obtained offline when needed)
        from benchmarks.common import default_cache
        from unlearn import pretrained

        name = str(pretrained.smollm2(default_cache())[0])
    model, tokenizer = load_model(name, texts=texts)
    model = model.to(args.device).eval()
    load_s = time.perf_counter() - start
    prompts = prompts_for(tokenizer, probes(args.probes), args.chat)
    lengths = [len(p) if isinstance(p, list) else len(tokenizer(p)["input_ids"]) for p in prompts]

    def way(batch_size: int):
        return lambda: generate_detailed(model, tokenizer, prompts, max_new_tokens=args.new_tokens,
                                         batch_size=batch_size, autocast=args.autocast)

    way(args.batch_size)()  # warm-up: allocator, kernels, lazy imports
    batched_s, batched_all, batched_out = best_time(way(args.batch_size), args.repeats)
    single_s, single_all, single_out = best_time(way(1), args.repeats)
    return {
        "benchmark": "generation",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": record.machine(),
        "model": args.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "device": args.device,
        "autocast_bf16": args.autocast,
        "chat_template": args.chat,
        "load_s": round(load_s, 2),
        "probes": args.probes,
        "prompt_tokens": {"min": min(lengths), "mean": round(sum(lengths) / len(lengths), 1),
                          "max": max(lengths)},
        "max_new_tokens": args.new_tokens,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "seconds": {"batched": round(batched_s, 3), "one_at_a_time": round(single_s, 3),
                    "batched_all": [round(t, 3) for t in batched_all],
                    "one_at_a_time_all": [round(t, 3) for t in single_all]},
        "probes_per_s": {"batched": round(args.probes / batched_s, 2),
                         "one_at_a_time": round(args.probes / single_s, 2)},
        "speedup": round(single_s / batched_s, 2),
        "new_tokens_generated": sum(len(g.token_ids) for g in batched_out),
        "outputs_equal": [g.token_ids for g in batched_out] == [g.token_ids for g in single_out],
        "example": {"prompt": prompts[0] if isinstance(prompts[0], str) else tokenizer.decode(prompts[0]),
                    "output": batched_out[0].text},
    }


def table(result: dict) -> str:
    rows = [("way", "batch", "seconds", "probes/s"),
            ("one at a time", "1", result["seconds"]["one_at_a_time"], result["probes_per_s"]["one_at_a_time"]),
            ("batched", str(result["batch_size"]), result["seconds"]["batched"], result["probes_per_s"]["batched"])]
    lines = [f"{a:<14} {b:>5} {c:>9} {d:>9}" for a, b, c, d in rows]
    m = result["machine"]
    lines.append(f"speedup {result['speedup']}x | outputs equal: {result['outputs_equal']} | "
                 f"{result['new_tokens_generated']} new tokens | model "
                 f"{result['model']} ({result['parameters']:,} params) | {result['probes']} probes x "
                 f"{result['max_new_tokens']} new tokens | {m['cpu_count']} CPUs, {m['torch_threads']} threads, "
                 f"torch {m['torch']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(table(result))
    record.write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
