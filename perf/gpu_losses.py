"""The chunked losses (``unlearn.losses``: NLL, Unilogit, UnDIAL) against their plain formulas at a
Llama-3 vocabulary (V = 128,256) in bf16: peak memory of forward + backward above the logits, time
per call, and the largest difference of value and gradient.

The plain formulas hold whole (B, T, V) fp32 tensors: NLL as ``F.cross_entropy`` on upcast logits;
Unilogit as ``KL(p ‖ q)`` with ``q`` from ``unilogit_targets`` and ``p`` a full log-softmax; UnDIAL
as ``KL(q ‖ p)`` with ``q`` from ``undial_targets``. Runs on CUDA (peak from
``torch.cuda.max_memory_allocated``) or, for a smoke check, on a CPU (peak not measured).

    python perf/gpu_losses.py                       # cuda:0, B x T = 4 x 1024
    python perf/gpu_losses.py --device cpu --vocab 4096 --length 64 --out /tmp/losses.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from unlearn import losses  # noqa: E402

GIB = 2 ** 30
GAMMA = 10.0


def plain_nll(z, labels, ref):
    y = labels[:, 1:]
    return F.cross_entropy(z[:, :-1].float().flatten(0, 1), y.flatten(), ignore_index=-100)


def plain_unilogit(z, labels, ref):
    _, _, mask = losses.shift(z, labels)
    log_q = losses.unilogit_targets(z, labels)
    log_p = torch.log_softmax(z[:, :-1].float(), dim=-1)
    return losses._reduce(losses._kl_per_token(log_p, log_q), mask, None)


def plain_undial(z, labels, ref):
    _, _, mask = losses.shift(z, labels)
    log_q = losses.undial_targets(ref, labels, GAMMA)
    log_p = torch.log_softmax(z[:, :-1].float(), dim=-1)
    return losses._reduce(losses._kl_per_token(log_q, log_p), mask, None)


CASES = {
    "nll": (lambda z, labels, ref: losses.nll(z, labels), plain_nll),
    "unilogit": (lambda z, labels, ref: losses.unilogit(z, labels), plain_unilogit),
    "undial": (lambda z, labels, ref: losses.undial(z, ref, labels, GAMMA), plain_undial),
}


def measure(fn, logits, labels, ref, device, repeats: int) -> dict:
    """Forward + backward of ``fn``: peak bytes above what was allocated before, seconds per call
    (median), the value and the gradient."""
    def call():
        z = logits.detach().requires_grad_(True)
        loss = fn(z, labels, ref)
        loss.backward()
        return loss.detach(), z.grad

    call()  # warm-up (kernels, allocator)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    loss, grad = call()
    peak = torch.cuda.max_memory_allocated() - base if cuda else None
    del grad
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = call()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del out
    value, grad = call()
    return {"peak_gib": None if peak is None else round(peak / GIB, 3), "seconds": round(statistics.median(times), 5),
            "value": float(value), "grad": grad}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "perf" / "results" / "gpu_losses.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    g = torch.Generator(device="cpu").manual_seed(0)
    shape = (args.batch, args.length, args.vocab)
    logits = (torch.randn(shape, generator=g) * 3).to(device, torch.bfloat16)
    ref = (torch.randn(shape, generator=g) * 3).to(device, torch.bfloat16)
    labels = torch.randint(0, args.vocab, shape[:2], generator=g).to(device)
    labels[:, : args.length // 8] = -100  # a prompt
    logits_gib = logits.numel() * logits.element_size() / GIB
    rows = []
    for name, (chunked, plain) in CASES.items():
        a = measure(chunked, logits, labels, ref, device, args.repeats)
        b = measure(plain, logits, labels, ref, device, args.repeats)
        grad_diff = float((a.pop("grad").float() - b.pop("grad").float()).abs().max())
        row = {"loss": name, "chunked": a, "plain": b, "value_diff": abs(a["value"] - b["value"]),
               "grad_max_diff": grad_diff,
               "memory_ratio": round(a["peak_gib"] / b["peak_gib"], 3) if a["peak_gib"] and b["peak_gib"] else None,
               "time_ratio": round(a["seconds"] / b["seconds"], 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"benchmark": "gpu_losses", "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "shape": list(shape), "dtype": "bfloat16",
              "logits_gib": round(logits_gib, 3), "rows": rows, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
