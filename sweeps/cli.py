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
    from sweeps import quick

    quick.main(retain=args.retain)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="unlearn", description="Sweeps and benchmarks for LLM unlearning.")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list the unlearning methods and their parameters").set_defaults(run=cmd_methods)
    demo = sub.add_parser("demo", help="run the local demo (currently: the quick check of every method)")
    demo.add_argument("--retain", choices=["none", "nll", "kl"], default="nll",
                      help="retain term of every method that takes one (gd always uses nll)")
    demo.set_defaults(run=cmd_demo)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
