"""Handing freed memory back to the OS after a burst (issue 13: RSS must come back
down after a flood, not stay at its peak).

CPython frees a record or a closed session at once, but glibc keeps the freed heap
pages mapped, so RSS stays at the burst's peak. `malloc_trim(0)` returns them; it is
cheap (a heap walk, the GIL released) and runs only while the pipeline is idle after
traffic, at most every `TRIM_SECONDS`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_SECONDS = 30.0
# Sessions close 60 s of stream time after their last record: keep trimming a while
# after traffic stops so what they free is returned too.
TRIM_AFTER_TRAFFIC_SECONDS = 300.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class Trimmer:
    """`idle()` on every idle tick, `busy()` whenever records were processed."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self._last_traffic = float("-inf")
        self._last_trim = float("-inf")

    def busy(self) -> None:
        self._last_traffic = time.monotonic()

    def idle(self) -> bool:
        """Trim when due; True when it did."""
        now = time.monotonic()
        if (
            self._trim is None
            or now - self._last_traffic > TRIM_AFTER_TRAFFIC_SECONDS
            or now - self._last_trim < TRIM_SECONDS
        ):
            return False
        self._last_trim = now
        self._trim(0)
        return True
