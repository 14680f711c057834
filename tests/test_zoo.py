"""The zoo spec in the suite: every registered method once on the tiny preset, as a user runs it
(``unlearn sweep sweeps/specs/zoo.yaml``, then ``unlearn report``); every trial finishes and the
report shows every method in its summary, its hypervolumes and its fronts."""

from html.parser import HTMLParser

import pytest

from helpers.report_sweeps import FRONT_SVG
from reports.record import OK
from unlearn import methods

pytestmark = [pytest.mark.ray, pytest.mark.slow]


class _FirstCells(HTMLParser):
    """Per table: its header cells and the first cell of each body row."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._first = [], None, False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"head": [], "rows": []})
        elif tag == "tr":
            self._first = True
        elif tag in ("th", "td"):
            self._cell = tag if tag == "th" or self._first else None
            if tag == "td" and self._first:
                self.tables[-1]["rows"].append("")
            self._first = False

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self._cell = None

    def handle_data(self, data):
        if self._cell == "th":
            self.tables[-1]["head"].append(data)
        elif self._cell == "td":
            self.tables[-1]["rows"][-1] += data


def test_every_method_finishes_one_trial(zoo_sweep):
    import reports

    assert zoo_sweep["sweep"].returncode == 0, zoo_sweep["sweep"].stdout[-3000:]
    assert f"{len(methods.names())} trials over" in zoo_sweep["sweep"].stdout
    df = reports.load([str(zoo_sweep["dir"])])
    trials = df[df["role"] == "trial"]
    last = trials.sort_values("epoch").groupby("trial").tail(1)
    assert sorted(last["method"]) == methods.names()
    assert set(last["status"]) == {OK} and set(last["epoch"]) == {1}


def test_the_report_shows_every_method(zoo_sweep):
    said = zoo_sweep["report_command"]
    assert said.returncode == 0 and f"{len(methods.names())} trial(s), 0 not finished" in said.stdout, said.stdout
    parser = _FirstCells()
    parser.feed(zoo_sweep["report"].read_text().replace("<wbr>", ""))
    summary = next(t for t in parser.tables if "selected configuration" in t["head"])
    volumes = next(t for t in parser.tables if any(h.startswith("hypervolume") for h in t["head"]))
    assert sorted(summary["rows"]) == methods.names()
    assert set(methods.names()) <= set(volumes["rows"])  # beside them, the reference point's row
    text = zoo_sweep["report"].read_text()
    assert text.count(FRONT_SVG) >= len(volumes["head"]) - 1  # a figure for every front with trial values
