"""Renders report bundles: the charts in a process pool with a timeout, text and CSV in-process.

matplotlib is neither thread-safe nor quick, and holds the GIL while drawing; worker processes
(started with "spawn", safe beside the event loop's threads) keep the loop responsive. A render
that fails or takes too long leaves the report without charts and with a note saying so.
"""

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from reports.bundle import Charts, ReportBundle, render_bundle, render_charts
from reports.charts import render_heatmap_png
from reports.errors import N_
from reports.heatmap import Heatmap
from reports.i18n import translator
from reports.model import Report

logger = logging.getLogger(__name__)
T = TypeVar("T")

CHARTS_UNAVAILABLE = N_(
    "Charts are unavailable right now; the numbers above and the CSV are complete."
)
ChartFunction = Callable[[Report, str], Charts]
HeatmapFunction = Callable[[Heatmap, str], bytes | None]


def draw_heatmap(heatmap: Heatmap, lang: str) -> bytes | None:
    """The heatmap PNG; module-level (and positional) so a process pool can run it."""
    return render_heatmap_png(heatmap, lang=lang)


class Renderer:
    def __init__(
        self,
        *,
        workers: int = 2,
        timeout: float = 20.0,
        chart_function: ChartFunction = render_charts,
        heatmap_function: HeatmapFunction = draw_heatmap,
    ) -> None:
        self.workers, self.timeout = workers, timeout
        self.chart_function = chart_function
        self.heatmap_function = heatmap_function
        self._pool: ProcessPoolExecutor | None = None
        # At most one render per worker is submitted, so the timeout measures the render
        # itself, not the time spent queued behind others.
        self._slots: asyncio.Semaphore | None = None
        self._in_flight: dict[ProcessPoolExecutor, set[asyncio.Future[Any]]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._retired: set[ProcessPoolExecutor] = set()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_yield_to_the_bot,
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

    async def render_heatmap(self, heatmap: Heatmap, *, lang: str) -> bytes | None:
        """The heatmap PNG drawn in the pool; None when the period is empty or drawing failed."""
        if heatmap.total == 0:
            return None
        return await self._in_pool(self.heatmap_function, heatmap, lang)

    async def _charts(self, report: Report, lang: str) -> tuple[Charts, str | None]:
        if report.is_empty:
            return (None, None, None), None
        charts = await self._in_pool(self.chart_function, report, lang)
        if charts is not None:
            return charts, None
        gettext = translator(lang).gettext
        return (None, None, None), "<i>" + gettext(CHARTS_UNAVAILABLE) + "</i>"

    async def _in_pool(self, function: Callable[..., T], *args: Any) -> T | None:
        """function(*args) in a worker, one per worker at a time; None when it failed or
        took longer than the timeout (logged: the caller sends what it has without charts)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        async with self._slots:
            try:
                return await self._render_in_pool(function, *args)
            except TimeoutError:
                logger.error(
                    "chart rendering took over %s s: sending the report without charts",
                    self.timeout,
                )
            except (BrokenProcessPool, OSError) as exc:
                logger.error("chart workers failed (%s): sending the report without charts", exc)
                self._retire(self._pool)
            except Exception:
                logger.exception("chart rendering failed: sending the report without charts")
        return None

    async def _render_in_pool(self, function: Callable[..., T], *args: Any) -> T:
        pool = self._executor()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(pool, function, *args)
        in_flight = self._in_flight.setdefault(pool, set())
        in_flight.add(future)
        future.add_done_callback(in_flight.discard)
        try:
            # Shielded: a render that runs late is abandoned, not cancelled (it cannot be).
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            # That worker is stuck: new renders get a fresh pool, and the old one is ended
            # once the renders still running in it are done.
            in_flight.discard(future)
            self._retire(pool)
            raise

    def _retire(self, pool: ProcessPoolExecutor | None) -> None:
        if pool is None:
            return
        if self._pool is pool:
            self._pool = None
        others = self._in_flight.pop(pool, set())
        self._retired.add(pool)

        async def end_when_others_finish() -> None:
            if others:
                await asyncio.wait(others)
            _terminate(pool)
            self._retired.discard(pool)

        task = asyncio.get_running_loop().create_task(end_when_others_finish())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        for pool in list(self._retired):
            _terminate(pool)
        self._retired.clear()
        self._in_flight.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _yield_to_the_bot() -> None:
    # Workers draw at full speed on every core; a lower priority lets the bot's event loop
    # (and the database) run first when the cores are busy, so commands stay responsive.
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)


def _warm() -> None:
    import matplotlib.figure  # noqa: F401 - importing is the warm-up


def _terminate(pool: Executor) -> None:
    # ProcessPoolExecutor cannot cancel a running call; ending its processes is the only way
    # to reclaim a worker stuck in a render.
    processes: dict[Any, Any] = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
