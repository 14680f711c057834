"""`unlearn demo --quick`: the tiny sweep end to end; its report holds every figure and opens cleanly
in headless Chromium. A second run reuses the prepared models and the finished trials."""

import re

import pytest
from PIL import Image

from test_reports_html import _run, chromium  # noqa: F401  (the browser fixture)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, unlearn_cache):
    import ray

    from sweeps import demo as demo_module

    storage = tmp_path_factory.mktemp("demo")
    report = demo_module.main(storage=str(storage), quick=True)
    ray.shutdown()
    return report


def test_quick_demo_writes_a_report_with_real_values(demo):
    text = demo.read_text()
    assert "unilogit" in text and "undial" in text and text.count("data:image/png;base64,") >= 7
    assert "no finished trial" not in text


def test_quick_demo_report_opens_in_chromium(chromium, demo, tmp_path):  # noqa: F811
    dom = _run(chromium, tmp_path, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
               "--dump-dom", demo.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-sortable="ready"' in re.search(r"<body[^>]*>", dom.stdout).group(0)
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    shot = tmp_path / "demo.png"
    run = _run(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", demo.as_uri())
    assert run.returncode == 0 and shot.is_file()
    histogram = Image.open(shot).convert("L").histogram()
    assert sum(1 for count in histogram if count) > 50  # not blank


def test_second_run_reuses_everything(demo, capsys):
    import time

    import ray

    from sweeps import demo as demo_module

    began = time.time()
    again = demo_module.main(storage=str(demo.parent.parent), quick=True)
    ray.shutdown()
    assert again == demo and time.time() - began < 120
