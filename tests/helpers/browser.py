"""Headless Chromium for the report tests: the fixture that finds it and a runner (shared by the
test modules that open a report; not a test module itself)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from PIL import Image


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    if in_ci():
        pytest.fail("CI is set but chromium is not installed (`make install` installs it when run as root)")
    pytest.skip("chromium is not installed (this test always runs under CI=true)")


def run(chromium: str, tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def check_opens(chromium: str, report, tmp_path) -> None:
    """The report loads without console errors, its own script runs, and the page is not blank."""
    dom = run(chromium, tmp_path, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
              "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-sortable="ready"' in re.search(r"<body[^>]*>", dom.stdout).group(0)
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    shot = tmp_path / "shot.png"
    result = run(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", report.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    histogram = Image.open(shot).convert("L").histogram()
    assert sum(1 for count in histogram if count) > 50  # not blank
