"""The plan's activation formula against ``torch.cuda.max_memory_allocated`` on one GPU.

A bf16 Llama built from a config (h 2048, I 7168, 4 layers, V 128,256; no download), B·T = 2048
tokens with a padding mask, one micro-step of our losses (``unlearn.losses``): forward, loss,
backward, without and with gradient checkpointing (``unlearn.models.checkpoint_activations``).
Measured: peak allocated during the step minus what was allocated before it (weights, and
gradients from a first step, so that the peak is the activations'). Formula:
``sweeps.plan.activations``. Needs torch and transformers only (and this repository's code).

    python perf/activations.py            # on a CUDA machine; writes perf/results/activations.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from unlearn import losses  # noqa: E402

GIB = 2 ** 30


def formula(config, batch: int, length: int, passes: int, ref_passes: int, checkpointing: bool) -> int:
    from sweeps.plan import activations, shape_of

    return activations(shape_of(config, "check"), batch, length, bf16=True, passes=passes, ref_passes=ref_passes,
                       checkpointing=checkpointing)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "perf" / "results" / "activations.json"))
    parser.add_argument("--smoke", action="store_true", help="a small model on the CPU, nothing measured")
    args = parser.parse_args(argv)
    from unlearn.models import checkpoint_activations

    device = torch.device("cpu" if args.smoke else "cuda")
    size = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                vocab_size=512) if args.smoke else \
        dict(hidden_size=2048, intermediate_size=7168, num_attention_heads=16, num_key_value_heads=8, vocab_size=128256)
    config = LlamaConfig(num_hidden_layers=4, max_position_embeddings=4096, **size)
    model = LlamaForCausalLM(config).to(device, torch.bfloat16).train()
    cuda = device.type == "cuda"
    ref = LlamaForCausalLM(config).to(device, torch.bfloat16).eval()
    rows = []
    for checkpointing, batch, length in ((False, 4, 512), (False, 2, 1024), (True, 4, 512), (True, 2, 1024)):
        if checkpointing and not rows[-1]["checkpointing"]:
            checkpoint_activations(model)
        ids = torch.randint(0, config.vocab_size, (batch, length), device=device)
        mask = torch.ones_like(ids)
        mask[0, : length // 8] = 0
        labels = ids.masked_fill(mask == 0, -100)
        for name, (passes, ref_passes, step) in _cases(model, ref, ids, mask, labels).items():
            step().backward()  # gradients allocated: part of the baseline, as in training
            if cuda:
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            step().backward()
            if cuda:
                torch.cuda.synchronize()
            measured = torch.cuda.max_memory_allocated() - base if cuda else 0
            expected = formula(config, batch, length, passes, ref_passes, checkpointing)
            rows.append({"case": name, "checkpointing": checkpointing, "batch": batch, "length": length,
                         "measured_gib": round(measured / GIB, 2),
                         "formula_gib": round(expected / GIB, 2), "ratio": round(measured / expected, 3)})
            print(rows[-1], flush=True)
            model.zero_grad(set_to_none=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "activations", "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                               "torch": torch.__version__, "rows": rows,
                               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2) + "\n")
    print(f"wrote {out}")


def _cases(model, ref, ids, mask, labels) -> dict:
    """name -> (model passes, reference passes, a step returning the loss) for one batch."""

    def forward(m):
        return m(input_ids=ids, attention_mask=mask).logits

    return {
        "ga": (1, 0, lambda: losses.ga(forward(model), labels)),
        "ga+nll": (2, 0, lambda: losses.ga(forward(model), labels) + losses.nll(forward(model), labels)),
        "unilogit+nll": (2, 0, lambda: losses.unilogit(forward(model), labels)
                         + losses.nll(forward(model), labels)),
        "undial+nll": (2, 1, lambda: losses.undial(forward(model), _ref_logits(ref, ids, mask), labels, 10.0)
                       + losses.nll(forward(model), labels)),
    }


@torch.no_grad()
def _ref_logits(ref, ids, mask):
    return ref(input_ids=ids, attention_mask=mask).logits


if __name__ == "__main__":
    main()
