"""Picklable helpers for the fault tests that run inside the renderer's spawned worker processes.

A spawned worker imports this module by name, so it stays light: no aiogram, no fake server.
"""

import os
import time
from pathlib import Path

from reports.bundle import Charts, render_charts
from reports.model import Report

# While the file this variable names exists, `charts_or_hang` hangs. The variable must be set
# before the renderer spawns its workers: a spawned process gets the environment of that moment.
HANG_FLAG_ENV = "FAULT_TESTS_HANG_FLAG"
HANG_SECONDS = 3600.0


def charts_or_hang(report: Report, lang: str) -> Charts:
    """The real chart function, except that it hangs while the flag file exists."""
    flag = os.environ.get(HANG_FLAG_ENV)
    if flag and Path(flag).exists():
        time.sleep(HANG_SECONDS)
    return render_charts(report, lang)


SLOW_SECONDS = 1.0


def slow_charts(report: Report, lang: str) -> Charts:
    """The real chart function, a healthy but slow second later (a big report, a busy host)."""
    time.sleep(SLOW_SECONDS)
    return render_charts(report, lang)


def failing_heatmap(heatmap: object, lang: str) -> bytes | None:
    """A heatmap renderer that always fails, as a broken font cache or matplotlib would."""
    raise RuntimeError("drawing failed")
