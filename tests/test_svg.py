"""The hand-written SVG front: well-formed, one titled point per configuration with its id, positions
and error bars true to the data (read back through the axis ticks), each method's step line through
exactly its Pareto-optimal points, text escaped, NaN skipped, and ids shared with the table's rows."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from reports.pareto import configurations, pareto_front
from reports.svg import Z95, config_id, embed, front_svg, interval, label_points, nice_ticks, point_id

NS = "{http://www.w3.org/2000/svg}"
DIRECTIONS = {"forget": "min", "retain": "max"}
ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@pytest.fixture
def points() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for method, n in (("ga", 7), ("npo", 6), ("undial", 5)):
        for k in range(n):
            rows.append({"sweep": "s", "method": method, "lr": 10.0 ** -(k % 3 + 3), "gamma": k, "epoch": k % 2 + 1,
                         "forget": rng.uniform(0, 1), "retain": rng.uniform(20, 60),
                         "forget_stderr": rng.uniform(0.005, 0.03), "retain_stderr": rng.uniform(0.2, 2.0),
                         "n_seeds": 2, "trials": f"{method}_{k}a, {method}_{k}b"})
    df = label_points(pd.DataFrame(rows), ["lr", "gamma", "seed"])
    undial = df["method"] == "undial"  # explicit intervals, asymmetric: they win over the standard error
    df.loc[undial, "retain_lo"] = df.loc[undial, "retain"] - 3.0
    df.loc[undial, "retain_hi"] = df.loc[undial, "retain"] + 1.0
    return df


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def circles(root: ET.Element) -> dict:
    return {c.get("id"): c for c in root.iter(f"{NS}circle") if c.get("class") == "point"}


def axis_map(root: ET.Element, axis: str):
    """Data value → pixel, from the tick lines and their labels (the figure's own scale, read back)."""
    ticks = [(float(g.find(f"{NS}text").text), float(g.find(f"{NS}line").get("x1" if axis == "x" else "y1")))
             for g in root.iter(f"{NS}g") if g.get("class") == f"tick-{axis}"]
    (v0, p0), (v1, p1) = ticks[0], ticks[-1]
    return lambda v: p0 + (v - v0) / (v1 - v0) * (p1 - p0)


def draw(points, **kwargs) -> ET.Element:
    return parse(front_svg(points, "forget", "retain", directions=DIRECTIONS, **kwargs))


def test_every_configuration_is_one_titled_point(points):
    root = draw(points)
    found = circles(root)
    assert sorted(found) == sorted(points["point_id"]) and len(found) == len(points)
    for _, row in points.iterrows():
        assert ID.match(row["point_id"])
        title = found[row["point_id"]].find(f"{NS}title").text
        lines = title.split("\n")
        assert lines[0] == row["label"] and f"epoch {row['epoch']}" in lines[0] and "2 seeds" in lines[0]
        for metric in ("forget", "retain"):
            lo, hi = interval(row, metric)
            assert f"{metric} = {row[metric]:.4g} [{lo:.4g}, {hi:.4g}]" in lines
    assert root.get("role") == "img" and root.get("aria-label")


def test_positions_follow_the_data(points):
    root = draw(points)
    found, to_x, to_y = circles(root), axis_map(root, "x"), axis_map(root, "y")
    for _, row in points.iterrows():
        circle = found[row["point_id"]]
        assert float(circle.get("cx")) == pytest.approx(to_x(row["forget"]), abs=0.02)
        assert float(circle.get("cy")) == pytest.approx(to_y(row["retain"]), abs=0.02)
    by_x = points.sort_values("forget")
    assert np.all(np.diff([float(found[i].get("cx")) for i in by_x["point_id"]]) > 0)  # larger x: further right
    by_y = points.sort_values("retain")
    assert np.all(np.diff([float(found[i].get("cy")) for i in by_y["point_id"]]) < 0)  # larger y: higher up


def test_error_bars_end_at_the_interval_ends(points):
    root = draw(points)
    to_x, to_y = axis_map(root, "x"), axis_map(root, "y")
    groups = {g.find(f"{NS}circle").get("id"): g for g in root.iter(f"{NS}g") if g.get("class") == "config"}
    for _, row in points.iterrows():
        bars = {line.get("class"): line for line in groups[row["point_id"]].iter(f"{NS}line")}
        x_lo, x_hi = row["forget"] - Z95 * row["forget_stderr"], row["forget"] + Z95 * row["forget_stderr"]
        y_lo, y_hi = ((row["retain_lo"], row["retain_hi"]) if row["method"] == "undial"
                      else (row["retain"] - Z95 * row["retain_stderr"], row["retain"] + Z95 * row["retain_stderr"]))
        assert float(bars["err-x"].get("x1")) == pytest.approx(to_x(x_lo), abs=0.02)
        assert float(bars["err-x"].get("x2")) == pytest.approx(to_x(x_hi), abs=0.02)
        assert float(bars["err-y"].get("y1")) == pytest.approx(to_y(y_lo), abs=0.02)
        assert float(bars["err-y"].get("y2")) == pytest.approx(to_y(y_hi), abs=0.02)


def test_each_front_passes_through_exactly_its_pareto_points(points):
    root = draw(points)
    found = circles(root)
    lines = {p.get("data-method"): p for p in root.iter(f"{NS}polyline") if p.get("class") == "front"}
    assert sorted(lines) == ["ga", "npo", "undial"]
    for method, group in points.groupby("method"):
        optimal = set(pareto_front(group, DIRECTIONS)["point_id"])
        line = lines[method]
        assert set(line.get("data-points").split()) == optimal
        vertices = {tuple(map(float, v.split(","))) for v in line.get("points").split()}
        on_line = {i for i in group["point_id"]
                   if (float(found[i].get("cx")), float(found[i].get("cy"))) in vertices}
        assert on_line == optimal
        assert len(line.get("points").split()) == 2 * len(optimal) - 1  # a step between consecutive points


def test_text_is_escaped(points):
    evil = "<script>alert(1)</script> & \"quoted\" 'single' \x1f"
    points = points.assign(label=np.where(points["method"] == "ga", evil, points["label"]),
                           method=points["method"].replace("npo", "n<p>o&"))
    svg = front_svg(points, "forget", "retain", directions=DIRECTIONS, title="<b>front</b> & co",
                    labels={"forget": "forget <×100>"})
    assert "<script>" not in svg and "<b>" not in svg
    root = parse(svg)
    titles = [c.find(f"{NS}title").text for c in circles(root).values()]
    assert sum(t.startswith(evil.replace("\x1f", "")) for t in titles) == (points["method"] == "ga").sum()
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "n<p>o&" in texts and "<b>front</b> & co" in texts and "forget <×100> (← lower is better)" in texts
    assert root.get("aria-label") == "<b>front</b> & co"


def test_nan_points_are_skipped(points):
    points = points.copy()
    points.loc[points.index[0], "forget"] = np.nan
    points.loc[points.index[1], "retain"] = np.nan
    skipped = set(points["point_id"].iloc[:2])
    root = draw(points)
    assert set(circles(root)) == set(points["point_id"]) - skipped
    for line in root.iter(f"{NS}polyline"):
        assert not skipped & set(line.get("data-points").split())
    assert "nan" not in ET.tostring(root, encoding="unicode").lower()


@pytest.mark.parametrize("empty", [pd.DataFrame(columns=["method", "forget", "retain"]), None])
def test_empty_input_renders(points, empty):
    empty = points.assign(forget=np.nan) if empty is None else empty
    root = draw(empty)
    assert not circles(root) and root.tag == f"{NS}svg"
    assert "nothing to plot" in "".join(root.itertext())


def test_references_are_distinct_titled_markers(points):
    references = pd.DataFrame({"role": ["target", "oracle"], "forget": [0.95, 0.05], "retain": [70.0, 55.0],
                               "forget_stderr": [0.01, np.nan]})
    root = draw(points, references=references)
    marks = {p.get("data-role"): p for p in root.iter(f"{NS}path") if p.get("class") == "ref"}
    assert set(marks) == {"target", "oracle"}
    assert marks["target"].get("d") != marks["oracle"].get("d")
    target = marks["target"].find(f"{NS}title").text
    assert target.startswith("target") and f"forget = 0.95 [{0.95 - Z95 * 0.01:.4g}, {0.95 + Z95 * 0.01:.4g}]" in target
    assert "retain = 70\n" not in target and target.endswith("retain = 70")  # no interval: none shown
    assert axis_map(root, "y")(70.0) >= 34 - 0.01  # the axes reach the reference rows
    legend = [t.text for g in root.iter(f"{NS}g") if g.get("class") == "legend" for t in g.iter(f"{NS}text")]
    assert legend == ["ga", "npo", "undial", "target (before unlearning)", "oracle (retrained)"]


def test_marker_area_grows_with_size(points):
    root = draw(points, size="gamma")
    found = circles(root)
    order = points.sort_values("gamma")
    radii = [float(found[i].get("r")) for i in order["point_id"]]
    assert np.all(np.diff(radii) >= 0) and radii[-1] > radii[0]
    assert any("gamma = " in c.find(f"{NS}title").text for c in found.values())


def test_output_is_deterministic_and_ids_can_be_prefixed(points):
    first = front_svg(points, "forget", "retain", directions=DIRECTIONS, size="gamma")
    assert first == front_svg(points.copy(), "forget", "retain", directions=DIRECTIONS, size="gamma")
    other = parse(front_svg(points, "forget", "retain", directions=DIRECTIONS, id_prefix="b-"))
    assert set(circles(other)) == {f"b-{i}" for i in points["point_id"]}


def test_nice_ticks_use_1_2_5_steps():
    for low, high in ((0.03, 0.97), (-3.2, 41.0), (1e-4, 7e-4), (120.0, 9000.0), (5.0, 5.0)):
        ticks = nice_ticks(low, high)
        step = float(f"{ticks[1] - ticks[0]:.9g}")
        assert float(f"{step:e}".split("e")[0]) in (1, 2, 5)
        assert ticks[0] <= low and ticks[-1] >= high and 4 <= len(ticks) <= 12
        assert np.allclose(np.diff(ticks), step)


def test_table_rows_and_points_share_ids():
    grid = [(m, lr, seed, epoch) for m in ("ga", "npo") for lr in (1e-5, 1.0000001e-5) for seed in (0, 1)
            for epoch in (1, 2)]
    trials = pd.DataFrame([{"sweep": "s", "role": "trial", "status": "ok", "method": m, "lr": lr, "seed": seed,
                            "epoch": epoch, "trial": f"{m}-{lr}-{seed}", "forget": 0.1 * epoch + seed,
                            "retain": lr * 1e5} for m, lr, seed, epoch in grid])
    trials.attrs = {"hyperparameters": ["lr", "seed"], "directions": {"forget": "min", "retain": "max"}}
    configs = label_points(configurations(trials))
    assert len(set(configs["point_id"])) == len(configs) == 8  # lr differing in the 8th digit: distinct points
    assert all(ID.match(i) for i in configs["point_id"])
    assert {config_id(row, ["lr"]) for _, row in trials.iterrows()} == set(configs["point_id"])
    assert point_id("s", "a b", 1) == point_id("s", "a b", 1.0) != point_id("s", "a-b", 1)
    page = embed(front_svg(configs, "forget", "retain", directions=DIRECTIONS), caption="<i>caption</i>")
    assert page.startswith("<figure") and "base64" not in page and "&lt;i&gt;caption" in page
    for i in configs["point_id"]:
        assert f'id="{i}"' in page
