"""The HTML report: its summary, fronts and sections follow the benchmark declaration in the record
(per facet combination), and in a real browser (headless Chromium) it opens, its images decode, its
sorter runs, nothing from the data executes, and the page is not blank. Runs whenever ``CI`` is set (``make
install`` installs Chromium as root); skipped only when Chromium is absent outside CI."""

import base64
import hashlib
import html
import io
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

import reports
from helpers import browser
from helpers.browser import chromium  # noqa: F401  (the browser fixture)
from helpers.report_sweeps import DEFAULT_TRIALS, FORGET, FRONT_SVG, RETAIN, UTILITY, declaration, make_sweep

pytestmark = [pytest.mark.browser]

PWN = "document.body.setAttribute('data-pwned', '{}')"
EVIL_METHOD = f"<script>{PWN.format(1)}</script><b>evil</b>"
EVIL_ERROR = f"RuntimeError: <img src=x onerror=\"{PWN.format(2)}\"> went wrong"
EVIL_PARAM = f"\"'><svg onload=\"{PWN.format(3)}\">"
DROPPED = ("forget_verbmem_rouge_l_f1", "utility_qa_rouge_l_recall", "kl_oracle_model_forget", "privleak")
TRIALS = (
    *DEFAULT_TRIALS,
    {"method": "evil", "method_name": EVIL_METHOD, "lr": 2e-3, "seed": 0, "tag": EVIL_PARAM, "drop": DROPPED},
    {"method": "undial", "lr": 5e-2, "seed": 1, "gamma": 10, "fail": "error", "error": EVIL_ERROR},
)
# Test-only probe, appended to a copy of the report (its hash added to the policy): after load, record
# whether every image decoded, and sort the trials table by lr.
PROBE = """window.addEventListener("load", function () {
  var ok = Array.prototype.map.call(document.images, function (i) { return i.complete && i.naturalWidth > 0 ? 1 : 0; });
  document.body.setAttribute("data-images", ok.join(""));
  var th = Array.prototype.find.call(document.querySelectorAll("table.sortable th"), function (h) {
    return h.textContent === "lr"; });
  th.click();
  var cells = Array.prototype.map.call(th.closest("table").tBodies[0].rows, function (r) {
    return r.cells[th.cellIndex].getAttribute("data-v") || ""; });
  document.body.setAttribute("data-lr", cells.join(" "));
});"""


class _Links(HTMLParser):
    """Every element that may load or run something: (tag, its src / href)."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("a", "img", "script", "link", "iframe", "object", "embed", "video", "audio", "source") or \
                any(name.startswith("on") for name in attrs):
            self.found.append((tag, attrs.get("src") or attrs.get("href") or ""))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    df = reports.load(make_sweep(root, "evil-sweep", TRIALS))
    path = root / "report.html"
    reports.render(df, path)
    return path


def test_report_is_escaped_self_contained_and_its_images_decode(report):
    text = report.read_text()
    assert text.count("<script") == 1  # the sorter, nothing from the data
    for payload in (EVIL_METHOD, EVIL_ERROR, EVIL_PARAM):
        assert payload not in text and html.escape(payload, quote=True) in text
    links = _Links()
    links.feed(text)
    tags = [tag for tag, _ in links.found]  # the nav link, the PNG figures, the trials' links to points, the sorter
    assert tags[:5] == ["a", *["img"] * 4] and set(tags[5:-1]) == {"a"} and tags[-1] == "script"
    assert text.count(FRONT_SVG) == len(declaration()["fronts"])  # the fronts, inline SVG
    assert all(url.startswith("#") for tag, url in links.found if tag == "a")
    for data in (url for tag, url in links.found if tag == "img"):
        assert data.startswith("data:image/png;base64,")  # nothing fetched
        image = Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1], validate=True)))
        image.verify()
        assert min(image.size) > 200


def test_report_opens_in_headless_chromium(chromium, report, tmp_path):
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("script-src ", f"script-src 'sha256-{digest}' ")
                      .replace("</body>", f"<script>{PROBE}</script></body>"))
    dom = browser.run(chromium, tmp_path, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
               "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-sortable="ready"' in body  # the report's own script ran under its policy
    assert "data-pwned" not in body  # none from the data did
    assert re.search(r'data-images="(1+)"', body).group(1) == "1" * 4
    lrs = [float(v) for v in re.search(r'data-lr="([^"]*)"', body).group(1).split()]
    assert lrs == sorted(lrs) and len(lrs) >= 10
    assert html.escape(EVIL_METHOD, quote=False) in dom.stdout  # shown as text
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console

    shot = tmp_path / "report.png"
    run = browser.run(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", report.as_uri())
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 3000)
    histogram = image.histogram()
    assert sum(histogram[:250]) > 0.03 * image.size[0] * image.size[1]  # not a blank page
    assert sum(1 for count in histogram if count) > 50


class _Tables(HTMLParser):
    """The header cells of every table, and the text of every ``h4``."""

    def __init__(self):
        super().__init__()
        self.tables, self.h4, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        self._in = tag if tag in ("th", "h4") else self._in

    def handle_endtag(self, tag):
        if tag in ("th", "h4"):
            self._in = None

    def handle_data(self, data):
        if self._in == "th":
            self.tables[-1].append(data)
        elif self._in == "h4":
            self.h4.append(data)


def _headers(text: str) -> tuple[list[list[str]], list[str]]:
    """Each table's header cells, and the ``h4`` texts."""
    parser = _Tables()
    parser.feed(text.replace("<wbr>", ""))
    return parser.tables, parser.h4


def test_summary_columns_and_fronts_come_from_the_declaration(tmp_path):
    privacy = ["mia_min_k_auc", "privleak"]
    df = reports.load(make_sweep(tmp_path, "declared"))
    text = reports.render(df)
    tables, _ = _headers(text)
    summary_table = next(t for t in tables if "selected configuration" in t)
    assert summary_table == ["method", "finished / all trials", "selected configuration", "seeds",
                             FORGET, RETAIN, UTILITY, *privacy]  # forget, retain, floors, then privacy
    volumes = next(t for t in tables if any(h.startswith("hypervolume") for h in t))
    assert volumes[1:] == [f"hypervolume: {f['y']} vs {f['x']}" for f in declaration()["fronts"]]
    assert text.count(FRONT_SVG) == len(declaration()["fronts"])
    one_front = declaration(fronts=[{"x": FORGET, "y": RETAIN, "size": UTILITY}], selection=None)
    text = reports.render(reports.load(make_sweep(tmp_path, "one-front", benchmark=one_front)))
    tables, _ = _headers(text)
    assert next(t for t in tables if "selected configuration" in t)[4:] == privacy
    assert text.count(FRONT_SVG) == 1 and f"Marker area grows with {UTILITY}" in text
    assert "declares no selection rule" in text


def test_facets_get_their_own_subsections(tmp_path):
    trials = [{**trial, "forget_size": size} for size in (1, 2) for trial in DEFAULT_TRIALS[:6]]
    df = reports.load(make_sweep(tmp_path, "faceted", trials, facets={"forget_size": [1, 2]}))
    text = reports.render(df)
    tables, h4 = _headers(text)
    assert h4 == ["forget_size=1", "forget_size=2"] * 2  # the summary's, then the figures'
    assert sum("selected configuration" in t for t in tables) == 2
    assert text.count("data:image/png;base64,") == 2 * 4  # per facet: trajectories, KL (a), (b), (c)
    assert text.count(FRONT_SVG) == 2 * 3  # and its 3 fronts
    reference = next(t for t in tables if t[0] == "role")  # the reference rows show their facet
    assert reference[:2] == ["role", "forget_size"] and FORGET in reference


def test_intervals_verdicts_and_links_to_points(tmp_path):
    """With per-probe scores the report gives every hypervolume an interval, states a pairwise verdict
    for each front, and every trial row's ◉ links to a point drawn on the first front."""
    import re

    text = reports.render(reports.load(make_sweep(tmp_path, "probed")))
    assert "Fronts compared: hypervolume of" in text and "Selected configurations compared" in text
    tables, _ = _headers(text)
    volumes = next(t for t in tables if any(h.startswith("hypervolume") for h in t))
    assert len(volumes) == 1 + len(declaration()["fronts"])
    assert re.search(r"<td class=num data-v='[^']+'>[0-9.e-]+ \[[0-9.e-]+, [0-9.e-]+\]</td>", text)
    verdicts = re.findall(r"<td>(undial ahead|unilogit ahead|indistinguishable at this size)</td>", text)
    assert len(verdicts) >= len(declaration()["fronts"])
    links = re.findall(r"<a href='#(pt-[^']+)'>◉</a>", text)
    finished = sum(1 for t in DEFAULT_TRIALS if "fail" not in t)
    assert len(links) == finished and all(f'id="{link}"' in text for link in links)
