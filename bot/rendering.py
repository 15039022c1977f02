"""Renders report bundles: the pies in a process pool with a timeout, text and CSV in-process.

matplotlib is neither thread-safe nor quick, and holds the GIL while drawing; worker processes
(started with "spawn", safe beside the event loop's threads) keep the loop responsive. A render
that fails or takes too long leaves the report without pies and with a note saying so.
"""

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from reports.bundle import ReportBundle, render_bundle, render_charts
from reports.errors import N_
from reports.i18n import translator
from reports.model import Report

logger = logging.getLogger(__name__)

CHARTS_UNAVAILABLE = N_(
    "Charts are unavailable right now; the numbers above and the CSV are complete."
)
ChartFunction = Callable[[Report, str], tuple[bytes | None, bytes | None]]


class Renderer:
    def __init__(
        self,
        *,
        workers: int = 2,
        timeout: float = 20.0,
        chart_function: ChartFunction = render_charts,
    ) -> None:
        self.workers, self.timeout = workers, timeout
        self.chart_function = chart_function
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    async def warm_up(self) -> None:
        """Start the workers and import matplotlib in them before the first report needs it."""
        loop = asyncio.get_running_loop()
        pool = self._executor()
        await asyncio.gather(*(loop.run_in_executor(pool, _warm) for _ in range(self.workers)))

    async def render(
        self, report: Report, *, lang: str, delimiter: str, title: str | None = None
    ) -> ReportBundle:
        charts, note = await self._charts(report, lang)
        return render_bundle(
            report, lang=lang, delimiter=delimiter, title=title, charts=charts, note=note
        )

    async def _charts(
        self, report: Report, lang: str
    ) -> tuple[tuple[bytes | None, bytes | None], str | None]:
        if report.is_empty:
            return (None, None), None
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor(), self.chart_function, report, lang)
            return await asyncio.wait_for(future, self.timeout), None
        except TimeoutError:
            logger.error(
                "chart rendering took over %s s: sending the report without pies", self.timeout
            )
            # The worker is stuck: a fresh pool serves the next report.
            self._discard_pool()
        except (BrokenProcessPool, OSError) as exc:
            logger.error("chart workers failed (%s): sending the report without pies", exc)
            self._discard_pool()
        except Exception:
            logger.exception("chart rendering failed: sending the report without pies")
        gettext = translator(lang).gettext
        return (None, None), "<i>" + gettext(CHARTS_UNAVAILABLE) + "</i>"

    def _discard_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            _terminate(pool)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _warm() -> None:
    import matplotlib.figure  # noqa: F401 - importing is the warm-up


def _terminate(pool: Executor) -> None:
    # ProcessPoolExecutor cannot cancel a running call; ending its processes is the only way
    # to reclaim a worker stuck in a render.
    processes: dict[Any, Any] = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
