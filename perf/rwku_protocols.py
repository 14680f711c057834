"""RWKU's "before" row under both protocols (``paper`` and ``clean``), and the difference.

A model is evaluated before any unlearning, as the RWKU paper's first table row: forget and
neighbour FB / QA / AA / All, optionally the utility tasks, once per protocol on the same targets;
the per-target values are averaged over targets, as the paper does. The numbers go to
``perf/results/rwku_protocols.json`` (``--out`` to change).

    .venv/bin/python perf/rwku_protocols.py                 # SmolLM2, the test fixture (2 targets), CPU
    .venv/bin/python perf/rwku_protocols.py --model meta-llama/Meta-Llama-3-8B-Instruct \\
        --source jinzhuoran/RWKU --targets 100 --device cuda --dtype bfloat16 --utility bbh \\
        --out perf/results/rwku_protocols-llama3.json     # the paper's row, on a GPU
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

import benchmarks  # noqa: E402
from benchmarks.common import EvalConfig, default_cache  # noqa: E402
from unlearn.models import load_model  # noqa: E402

RESULTS = ROOT / "perf" / "results" / "rwku_protocols.json"
LEVELS = ("forget_fb", "forget_qa", "forget_aa", "forget_all", "neighbor_fb", "neighbor_qa", "neighbor_all")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="'smollm2' (default), a model directory or a hub id")
    parser.add_argument("--source", default=str(ROOT / "tests" / "fixtures" / "rwku"))
    parser.add_argument("--targets", type=int, default=2, help="the first n targets")
    parser.add_argument("--utility", nargs="*", default=[], help="utility tasks to add (e.g. bbh)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def before_row(model, tokenizer, data, source: str, protocol: str, utility: list[str], batch_size: int) -> dict:
    """Every metric of the unlearning targets, averaged over them (the paper's table row)."""
    benchmark = benchmarks.get("rwku", source=source, utility=utility, protocol=protocol)
    parts = ("generation", "utility") if utility else ("generation",)
    rows = [benchmark.evaluate(model, tokenizer, None, data.for_target(t), None, EvalConfig(batch_size=batch_size),
                               parts) for t in data.targets]
    names = dict.fromkeys(k for r in rows for k in r if not k.endswith("_stderr"))  # per-type AA: where a target has it
    return {k: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows) for k in names}


def run(args: argparse.Namespace) -> dict:
    name = args.model
    if name == "smollm2":  # the demo's model, from the cache (obtained offline when needed)
        from unlearn import pretrained

        name = str(pretrained.smollm2(default_cache())[0])
    model, tokenizer = load_model(name, dtype=args.dtype)
    model = model.to(args.device).eval()
    data = benchmarks.get("rwku", source=args.source, targets=args.targets,
                          utility=args.utility).materialize(default_cache())
    rows, seconds = {}, {}
    for protocol in ("paper", "clean"):
        start = time.perf_counter()
        with torch.no_grad():
            rows[protocol] = before_row(model, tokenizer, data, args.source, protocol, args.utility, args.batch_size)
        seconds[protocol] = round(time.perf_counter() - start, 1)
        print(f"{protocol}: {seconds[protocol]} s", flush=True)
    difference = {k: rows["paper"][k] - rows["clean"][k] for k in rows["clean"]}
    return {"benchmark": "rwku_protocols", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": record.machine(), "model": args.model, "source": args.source, "targets": len(data.targets),
            "probes": {g: len(data.rows[c]) for g, c in benchmarks.rwku.GROUPS.items()},
            "seconds": seconds, "paper": rows["paper"], "clean": rows["clean"], "paper_minus_clean": difference}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = run(args)
    print(f"{'metric':<36}{'paper':>9}{'clean':>9}{'paper-clean':>13}")
    for key in [f"{level}_rouge_l_recall" for level in LEVELS] + [k for k in result["paper"] if "utility" in k]:
        clean = result["clean"].get(key)
        print(f"{key:<36}{result['paper'][key]:>9.1f}" + (f"{clean:>9.1f}{result['paper_minus_clean'][key]:>13.1f}"
                                                          if clean is not None else f"{'-':>9}{'-':>13}"))
    record.write(result, args.out)
    return result


if __name__ == "__main__":
    main()
