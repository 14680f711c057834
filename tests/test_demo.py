"""`unlearn demo --quick` submitted as a Ray job: the tiny sweep end to end; its report holds every
figure and opens cleanly in headless Chromium. A second run reuses the prepared models and the finished trials."""

import pytest

from helpers.browser import check_opens, chromium  # noqa: F401  (the browser fixture)
from helpers.report_sweeps import FRONT_SVG

pytestmark = [pytest.mark.ray, pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(tiny_sweep):
    return tiny_sweep["report"]


def test_quick_demo_writes_a_report_with_real_values(demo):
    text = demo.read_text()
    assert "unilogit" in text and "undial" in text and text.count("data:image/png;base64,") >= 4
    assert text.count(FRONT_SVG) >= 3
    assert "no finished trial" not in text


def test_the_quick_demo_ran_as_a_ray_job(tiny_sweep):
    """``ray job submit`` against ``ray start --head`` on 127.0.0.1 ran ``unlearn demo --quick`` to
    its end: the job succeeded and printed where the report is."""
    out = tiny_sweep["job"].stdout
    assert "succeeded" in out and f"report: {tiny_sweep['report']}" in out


def test_quick_demo_report_opens_in_chromium(chromium, demo, tmp_path):  # noqa: F811
    check_opens(chromium, demo, tmp_path)


def test_second_run_reuses_everything(demo, ray_cluster, capsys):
    from sweeps import demo as demo_module

    records = sorted(demo.parent.glob("*/*/metrics.jsonl"))
    before = {path: path.read_text() for path in records}
    again = demo_module.main(storage=str(demo.parent.parent), quick=True)
    assert again == demo and records
    assert {path: path.read_text() for path in records} == before  # no finished trial ran again
    assert "reusing" in capsys.readouterr().err  # nor was the target and oracle prepared again
