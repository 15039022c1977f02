"""Renders report bundles off the event loop, one at a time: matplotlib is not thread-safe."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from reports.bundle import ReportBundle, render_bundle
from reports.model import Report


class Renderer:
    """A single worker thread: charts never block the loop and never render concurrently."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    async def render(
        self, report: Report, *, lang: str, delimiter: str, title: str | None = None
    ) -> ReportBundle:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="charts")
        job = partial(render_bundle, report, lang=lang, delimiter=delimiter, title=title)
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
