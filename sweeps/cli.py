"""The ``unlearn`` command line. Heavy modules (torch, transformers, Ray) are imported inside each
command, so ``unlearn --help`` and argument errors are instant."""

from __future__ import annotations

import argparse
import sys


def cmd_methods(args) -> int:
    import dataclasses

    from unlearn import methods

    for name in methods.names():
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(methods.get(name)))
        print(f"{name:<9} {fields}")
    return 0


def cmd_demo(args) -> int:
    from sweeps import demo
    from sweeps.spec import SpecError

    try:
        demo.main(storage=args.storage, quick=args.quick, seed=args.seed)
    except SpecError as error:
        raise SystemExit(f"unlearn: error: {error}") from None
    return 0


def _params(pairs: list[str]) -> dict:
    """``key=value`` pairs; values parsed as YAML scalars (``people=12``, ``prompt=chat``)."""
    import yaml

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"unlearn: error: --param expects key=value; got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def _benchmark(args):
    import benchmarks

    try:
        return benchmarks.get(args.benchmark, **_params(args.param))
    except ValueError as error:
        raise SystemExit(f"unlearn: error: {error}") from None


def cmd_prepare(args) -> int:
    import dataclasses

    from benchmarks.prepare import Recipe, check_can_prepare, prepare

    benchmark = _benchmark(args)
    try:
        check_can_prepare(benchmark)
    except ValueError as error:
        raise SystemExit(f"unlearn: error: {error}") from None
    overrides = {k: v for k, v in (("lr", args.lr), ("max_epochs", args.max_epochs), ("autocast", args.bf16))
                 if v is not None}
    try:
        recipe = dataclasses.replace(Recipe(), **overrides)
    except ValueError as error:
        raise SystemExit(f"unlearn: error: {error}") from None
    _check_model(args.base_model)
    prepared = prepare(args.base_model, benchmark, recipe, cache=args.cache)
    print(f"target  {prepared.target}  forget recall {prepared.meta['target']['forget_recall']:.3f}")
    print(f"oracle  {prepared.oracle}  forget recall {prepared.meta['oracle']['forget_recall']:.3f}")
    return 0


def _check_model(name: str | None) -> None:
    from pathlib import Path

    if name and name != "tiny" and (name.startswith((".", "/", "~")) or name.endswith(".gguf")) \
            and not Path(name).expanduser().exists():
        raise SystemExit(f"unlearn: error: model path {name!r} does not exist")


def cmd_eval(args) -> int:
    import json
    from pathlib import Path

    from benchmarks.common import EvalConfig, default_cache, without_probes
    from unlearn import data, models

    benchmark = _benchmark(args)
    for name in (args.model, args.oracle):
        _check_model(name)
    dataset = benchmark.materialize((Path(args.cache) if args.cache else default_cache()) / "benchmarks")
    model, tokenizer = models.load_model(args.model)
    collate = data.Collator(tokenizer, max_length=256, chat_template=dataset.chat)
    config = EvalConfig(batch_size=args.batch_size, max_probes=args.max_probes, autocast=args.bf16 or False)
    oracle = models.load_model(args.oracle)[0].eval() if args.oracle else None
    if getattr(dataset, "targets", None):  # RWKU: the first chosen target
        dataset = dataset.for_target(dataset.targets[0])
    values = without_probes(benchmark.references(model.eval(), oracle, tokenizer, collate, dataset, config).baseline)
    directions = {m.name: m.direction for m in benchmark.metrics(config)}
    print(f"{'metric':<48} {'value':>9} {'± stderr':>9}  best")
    for name in sorted(k for k in values if not k.endswith("_stderr")):
        print(f"{name:<48} {values[name]:>9.4f} {values.get(name + '_stderr', float('nan')):>9.4f}  "
              f"{directions.get(name, '')}")
    if args.out:
        Path(args.out).write_text(json.dumps({"values": values, "directions": directions}, indent=2))
        print(f"wrote {args.out}")
    return 0


def cmd_sweep(args) -> int:
    from sweeps import spec as specs

    try:
        spec = specs.load(args.spec)
    except specs.SpecError as error:
        raise SystemExit(f"unlearn: error: {error}") from None
    from sweeps.run import run_sweep

    try:
        outcome = run_sweep(spec, storage=args.storage, address=args.address, resume=args.resume)
    except specs.SpecError as error:
        raise SystemExit(f"unlearn: error: {error}") from None
    for method, trial, error in outcome.failed:
        print(f"failed: {method} trial {trial}: {error}")
    print(f"results: {outcome.sweep_dir}")
    total = outcome.finished + len(outcome.failed)
    if outcome.finished == 0 and total:
        print(f"unlearn: error: no trial finished ({len(outcome.failed)} of {total} failed)", file=sys.stderr)
        return 1
    if outcome.failed:
        print(f"{len(outcome.failed)} of {total} trials failed; the others finished")
    return 0


def cmd_plan(args) -> int:
    from sweeps import plan

    return plan.main(args)


def cmd_status(args) -> int:
    from reports.record import RecordError
    from sweeps import results
    from sweeps.spec import SpecError

    try:
        print("\n".join(results.status_lines(results.sweep_dir(args.sweep_path))))
    except (SpecError, RecordError) as error:
        raise SystemExit(f"unlearn: error: {error}") from None
    return 0


def cmd_export(args) -> int:
    from reports.record import RecordError
    from sweeps import results
    from sweeps.spec import SpecError

    try:
        out = results.export(results.sweep_dir(args.sweep_path), args.trial, args.out)
    except (SpecError, RecordError) as error:
        raise SystemExit(f"unlearn: error: {error}") from None
    print(f"wrote {out}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="unlearn", description="Sweeps and benchmarks for LLM unlearning.")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list the unlearning methods and their parameters").set_defaults(run=cmd_methods)
    for add in (_demo, _prepare, _eval, _sweep, _plan, _status, _export):
        add(sub)
    from reports.cli import (
        add_command,  # light: heavy imports happen inside the command
    )

    add_command(sub)
    return top


def _demo(sub) -> None:
    demo = sub.add_parser("demo", help="run the demo sweep end to end and write runs/demo/report.html")
    demo.add_argument("--storage", default="runs", help="results directory (default: runs)")
    demo.add_argument("--quick", action="store_true", help="the tiny preset instead of SmolLM2 (a few minutes)")
    demo.add_argument("--seed", type=int, help="the benchmark's seed (its people and probes drawn afresh)")
    demo.set_defaults(run=cmd_demo)


def _prepare(sub) -> None:
    prep = sub.add_parser("prepare", help="fine-tune a benchmark's target and retrained oracle (cached)")
    prep.add_argument("benchmark", help="benchmark name (synthetic)")
    prep.add_argument("--base-model", required=True, help="'tiny', a model directory, a .gguf file or a hub id")
    _common(prep)
    prep.add_argument("--lr", type=float)
    prep.add_argument("--max-epochs", type=int)
    prep.set_defaults(run=cmd_prepare)


def _eval(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate a model on a benchmark (against an oracle when given)")
    ev.add_argument("--model", required=True, help="model directory, .gguf file or hub id")
    ev.add_argument("--benchmark", default="synthetic")
    ev.add_argument("--oracle", help="retrained model (directory or hub id): adds the oracle-relative metrics")
    ev.add_argument("--out", help="write the metrics as JSON here")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--max-probes", type=int, help="at most this many probes per group")
    _common(ev)
    ev.set_defaults(run=cmd_eval)


def _sweep(sub) -> None:
    sweep = sub.add_parser("sweep", help="run a sweep spec (YAML) with Ray Tune / Train / DeepSpeed")
    sweep.add_argument("spec", help="the sweep spec (YAML)")
    sweep.add_argument("--storage", help="results directory (overrides the spec's storage)")
    sweep.add_argument("--address", help="Ray cluster address (default: a local cluster on 127.0.0.1)")
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep (finished trials are kept)")
    sweep.set_defaults(run=cmd_sweep)


def _plan(sub) -> None:
    plan = sub.add_parser("plan", help="memory per GPU and time of a sweep spec, on paper (nothing runs)")
    plan.add_argument("spec", help="the sweep spec (YAML)")
    plan.add_argument("--cluster", default="cluster.yaml", help="Ray cluster file whose node type is checked")
    plan.add_argument("--node", help="node type of the cluster file (default: the one with most GPUs)")
    plan.add_argument("--gpu-mem", type=float, help="GiB per GPU (overrides the node type)")
    plan.add_argument("--gpus", type=int, help="GPUs per node (overrides the node type)")
    plan.add_argument("--cpu-mem", type=float, help="GiB of CPU memory per node (overrides the node type)")
    plan.add_argument("--nodes", type=int, help="nodes the cluster may start (overrides max_workers)")
    plan.add_argument("--forget-tokens", type=int, help="forget-set tokens per trial, when the data is not local")
    plan.add_argument("--eval-share", type=float, default=0.4, help="share of a trial spent evaluating (0.4)")
    plan.add_argument("--results", default="perf/results", help="where measured throughput is read")
    plan.add_argument("--json", help="also write the numbers as JSON here")
    plan.set_defaults(run=cmd_plan)


def _status(sub) -> None:
    status = sub.add_parser("status", help="progress of a running or finished sweep")
    status.add_argument("sweep_path", metavar="RUN", help="the sweep directory (<storage>/<name>)")
    status.set_defaults(run=cmd_status)


def _export(sub) -> None:
    export = sub.add_parser("export", help="write a trial's unlearned model as a Hugging Face directory")
    export.add_argument("sweep_path", metavar="RUN", help="the sweep directory (<storage>/<name>)")
    export.add_argument("trial", help="trial id (as `unlearn status` lists it) or trial directory name")
    export.add_argument("--out", required=True, help="new output directory")
    export.set_defaults(run=cmd_export)


def _common(command) -> None:
    command.add_argument("--param", action="append", metavar="KEY=VALUE",
                         help="benchmark parameter, repeatable (e.g. people=12)")
    command.add_argument("--cache", help="cache directory (default $UNLEARN_CACHE or ~/.cache/unlearn-sweeps)")
    command.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast on CPU")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
