"""One-GPU check of an unlearning step and of evaluation throughput, with torch and transformers only.

Builds a Llama from a config (random weights: nothing is downloaded; this file imports nothing
from its repository and can be copied alone to a machine without network) and measures, in bf16:
- training: tokens/s of an unlearning step (forward on a forget and a retain batch, the Unilogit
  loss in closed form KL(Bern(p_y) || Bern(1/V)) per token + the retain NLL, backward, AdamW step)
  and model FLOPs utilisation: (6 N + 12 L H Q T) x tokens/s against the GPU's peak dense bf16
  FLOPs (table below, or --peak-tflops); N = parameters taking part in matmuls (the input embedding
  of an untied model excluded);
- evaluation: batched greedy generation with KV cache (`model.generate`), batch 32 vs batch 1;
- peak memory: `torch.cuda.max_memory_allocated` for each phase.

    python perf/gpu_check.py                          # ~1B Llama shape on cuda:0
    python perf/gpu_check.py --size 8b --batch 4      # an 8B shape (AdamW states in bf16)
    python perf/gpu_check.py --device cpu --size tiny # smoke check on a CPU (nothing GPU-specific)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

SIZES = {  # Llama shapes: tiny (smoke checks), SmolLM2-135M, Llama-3.2-1B, Llama-3.1-8B
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=1024, tie_word_embeddings=False),
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
}
# Peak dense (no sparsity) bf16 tensor TFLOPS from vendor datasheets; first matching name wins.
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200 NVL", 835.0), ("GH200", 989.0), ("H100", 989.0),
    ("H200", 989.0), ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0),
    ("L40", 181.0), ("L4", 121.0), ("RTX 4090", 165.0), ("MI300X", 1307.0),
]


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> int:
    """Reset the peak counter; returns the bytes allocated now (0 on a CPU)."""
    if device.type != "cuda":
        return 0
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2) if device.type == "cuda" else None


def build(size: str, dtype: torch.dtype, device: torch.device) -> LlamaForCausalLM:
    config = LlamaConfig(**SIZES[size], max_position_embeddings=4096, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM._from_config(config, dtype=dtype)


def unlearning_loss(model, forget: torch.Tensor, retain: torch.Tensor) -> torch.Tensor:
    """Unilogit forget term (every position a target) + retain NLL, both in float32."""
    z = model(input_ids=forget, attention_mask=torch.ones_like(forget)).logits[:, :-1].float()
    y = forget[:, 1:]
    vocab = z.shape[-1]
    a = z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, dim=-1)  # log p_y
    q = (-torch.expm1(a)).clamp(min=1e-12)  # 1 - p_y
    forget_loss = (a.exp() * (a + math.log(vocab)) + q * (q.log() + math.log(vocab / (vocab - 1)))).mean()
    r = model(input_ids=retain, attention_mask=torch.ones_like(retain)).logits[:, :-1].float()
    return forget_loss + F.cross_entropy(r.flatten(0, 1), retain[:, 1:].flatten())


def flops_per_token(model: LlamaForCausalLM, seq: int) -> tuple[float, int]:
    """Training FLOPs per token (forward + backward): 6 N + 12 L H Q T, and N."""
    c = model.config
    n = sum(p.numel() for p in model.parameters())
    if not c.tie_word_embeddings:
        n -= model.get_input_embeddings().weight.numel()
    head_dim = c.hidden_size // c.num_attention_heads
    return 6 * n + 12 * c.num_hidden_layers * c.num_attention_heads * head_dim * seq, n


def train(model, args, device) -> dict:
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    batches = [(torch.randint(3, vocab, (args.batch, args.seq), generator=g).to(device),
                torch.randint(3, vocab, (args.batch, args.seq), generator=g).to(device)) for _ in range(4)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()
    setup = reset_peak(device)

    def one(i: int) -> torch.Tensor:
        loss = unlearning_loss(model, *batches[i % len(batches)])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for i in range(args.warmup):
        one(i)
    sync(device)
    start = time.perf_counter()
    for i in range(args.steps):
        loss = one(i)
    sync(device)
    seconds = time.perf_counter() - start
    tokens = 2 * args.batch * args.seq * args.steps
    per_token, n = flops_per_token(model, args.seq)
    tps = tokens / seconds
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    result = {
        "tokens_per_step": 2 * args.batch * args.seq, "steps": args.steps, "warmup": args.warmup,
        "seconds_per_step": round(seconds / args.steps, 4), "tokens_per_s": round(tps, 1),
        "loss_last": float(loss), "matmul_parameters": n, "flops_per_token": per_token,
        "achieved_tflops": round(per_token * tps / 1e12, 3), "peak_tflops": peak,
        "mfu": round(per_token * tps / (peak * 1e12), 4) if peak else None,
        "setup_allocated_gib": round(setup / 2 ** 30, 2) if device.type == "cuda" else None,
        "peak_allocated_gib": peak_gib(device),
    }
    del optimizer
    for p in model.parameters():
        p.grad = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


@torch.no_grad()
def evaluate(model, args, device) -> dict:
    model.eval()
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(3, model.config.vocab_size, (args.eval_batch, args.prompt_len), generator=g).to(device)

    def generate(ids: torch.Tensor) -> torch.Tensor:
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                              min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)

    generate(prompts[:2])
    setup = reset_peak(device)
    start = time.perf_counter()
    out = generate(prompts)
    sync(device)
    batched_s = time.perf_counter() - start
    batched_peak = peak_gib(device)
    singles = prompts[: args.eval_single]
    start = time.perf_counter()
    for row in singles:
        generate(row.unsqueeze(0))
    sync(device)
    single_s = time.perf_counter() - start
    new = out.shape[1] - args.prompt_len
    batched = {"batch": args.eval_batch, "sequences_per_s": round(args.eval_batch / batched_s, 2),
               "new_tokens_per_s": round(args.eval_batch * new / batched_s, 1), "seconds": round(batched_s, 3),
               "peak_allocated_gib": batched_peak}
    single = {"batch": 1, "sequences": len(singles), "sequences_per_s": round(len(singles) / single_s, 2),
              "new_tokens_per_s": round(len(singles) * new / single_s, 1), "seconds": round(single_s, 3)}
    return {"prompt_len": args.prompt_len, "new_tokens": new, "batched": batched, "batch_1": single,
            "speedup": round(batched["sequences_per_s"] / single["sequences_per_s"], 2),
            "setup_allocated_gib": round(setup / 2 ** 30, 2) if device.type == "cuda" else None}


def machine(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                    cuda=torch.version.cuda, capability=f"{props.major}.{props.minor}")
    return info


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1b", choices=sorted(SIZES))
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default=None, choices=("bf16", "fp32"), help="default: bf16 on a GPU, fp32 on a CPU")
    p.add_argument("--batch", type=int, default=8, help="micro-batch of the forget and of the retain batch")
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--eval-single", type=int, default=8, help="prompts generated one at a time")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOPS of the device")
    p.add_argument("--quick", action="store_true", help="few steps and tokens (smoke check)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default perf/results/gpu_check.json; gpu_check-quick.json with --quick "
                        "or on a CPU)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.eval_batch, args.eval_single, args.new_tokens = 3, 1, 8, 2, 8
        args.batch, args.seq = min(args.batch, 4), min(args.seq, 128)
    name = "gpu_check-quick.json" if args.quick or args.device == "cpu" else "gpu_check.json"
    args.out = args.out or Path(__file__).resolve().parent / "results" / name
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: no CUDA device (use --device cpu --size tiny for a smoke check)")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    start = time.perf_counter()
    model = build(args.size, dtype, device)
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    training = train(model, args, device)
    evaluation = evaluate(model, args, device)
    result = {"benchmark": "gpu_check", "quick": args.quick,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(device),
              "size": args.size, "config": SIZES[args.size], "parameters": params,
              "dtype": str(dtype).removeprefix("torch."), "optimizer": "torch.optim.AdamW (states in the model dtype)",
              "batch": args.batch, "seq": args.seq, "build_s": round(build_s, 2),
              "train": training, "generation": evaluation}
    gib = lambda x: "-" if x is None else f"{x} GiB"  # noqa: E731
    where = result["machine"].get("gpu", device)
    print(f"{args.size} Llama ({params / 1e6:,.1f} M params, {result['dtype']}) on {where}")
    print(f"train  {args.batch} x {args.seq} forget + retain: {training['tokens_per_s']} tokens/s, "
          f"{training['seconds_per_step']} s/step, {training['achieved_tflops']} TFLOPS, MFU {training['mfu']} "
          f"(peak {training['peak_tflops']} TFLOPS), peak memory {gib(training['peak_allocated_gib'])}")
    b, s = evaluation["batched"], evaluation["batch_1"]
    print(f"eval   greedy, {args.prompt_len} prompt + {evaluation['new_tokens']} new tokens: batch {b['batch']} "
          f"{b['sequences_per_s']} seq/s ({b['new_tokens_per_s']} tok/s), batch 1 {s['sequences_per_s']} seq/s "
          f"({s['new_tokens_per_s']} tok/s), speedup {evaluation['speedup']}x, peak memory "
          f"{gib(b['peak_allocated_gib'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
