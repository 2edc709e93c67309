"""Hot reload of the model bundle: polls its files and loads a changed bundle off the
worker thread. The stage installs what it is handed between batches, so no record is
scored half by one model and half by another."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from ..bundle import Bundle, BundleError, load_bundle, signature
from ..components import cancel


class BundleWatcher:
    def __init__(
        self,
        path: Path,
        interval: float,
        loaded: Callable[[Bundle], None],
        failed: Callable[[str], None],
    ):
        self.path = path
        self.interval = interval
        self.loaded = loaded
        self.failed = failed
        self._signature = signature(path)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async def poll() -> None:
            while True:
                await asyncio.sleep(self.interval)
                await self.check()

        self._task = asyncio.create_task(poll(), name="model-reload")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def check(self) -> bool:
        """Loads the bundle if its files changed since the last look; True if handed over."""
        current = signature(self.path)
        if current == self._signature:
            return False
        self._signature = current
        try:
            bundle = await asyncio.to_thread(load_bundle, self.path)
        except BundleError as exc:
            self.failed(str(exc))
            return False
        self.loaded(bundle)
        return True
