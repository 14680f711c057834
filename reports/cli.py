"""``unlearn report PATH... -o report.html``: one self-contained HTML report of sweep results.
Registered on the ``unlearn`` command line by ``sweeps/cli.py``; pandas and matplotlib are imported
inside the command so that ``unlearn --help`` stays instant."""

from __future__ import annotations


def add_command(sub) -> None:
    """Register the ``report`` sub-command on the ``unlearn`` parser."""
    report = sub.add_parser("report", help="write one self-contained HTML report of sweep results")
    report.add_argument("paths", nargs="+", metavar="PATH",
                        help="a sweep directory (<storage>/<sweep>) or a storage directory holding sweeps")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html)")
    report.set_defaults(run=cmd_report)


def cmd_report(args) -> int:
    from reports.html import render
    from reports.record import OK
    from reports.results import load

    try:
        df = load(args.paths)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"unlearn: error: {error}") from None
    render(df, args.output)
    trials = df[df["role"] == "trial"].drop_duplicates(["sweep", "trial"])
    failed = int((trials["status"] != OK).sum())
    print(f"wrote {args.output}: {df['sweep'].nunique()} sweep(s), {len(trials)} trial(s), {failed} not finished")
    return 0
