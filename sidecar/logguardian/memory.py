"""Memory that stays under its ceiling and comes back down after a flood (issue 13).

CPython's own small-object allocator (pymalloc) returns a 1 MiB arena only when every
object in it is dead. After a flood, the few objects that outlive it (open sessions,
templates, stored rows) are scattered over nearly every arena, so RSS stays at the
flood's peak: 500k session keys left `serve` at 350 MB under pymalloc once the sessions
had closed, and falling below 290 MB within a minute under glibc malloc plus
`malloc_trim`. Hence: `logguardian serve` re-executes itself under glibc malloc
(`use_system_allocator`), the worker trims at most every `TRIM_SECONDS` (`Trimmer`), and
admission waits while RSS is over `pipeline.memory_limit_mib` (`MemoryLimiter`).
bench/limits.py gives the figures and bench/e2e.py the allocator's cost.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_SECONDS = 30.0
CHECK_SECONDS = 0.05  # how stale an RSS reading admission may use
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
ALLOCATOR = "malloc"
# glibc tunables set with it (an operator's own values win): two arenas instead of eight
# per core for the worker, exporter and receiver threads, and a fixed mmap threshold so
# big request bodies stay mmapped and go back to the OS on free (glibc otherwise raises
# the threshold after the first such free and serves the next ones from the heap).
MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072"}


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


def use_system_allocator() -> None:
    """Re-executes this process (same pid, same arguments) under glibc malloc, once.

    Only where `malloc_trim` exists to hand pages back; an explicit PYTHONMALLOC (any
    value, e.g. `pymalloc`) is the operator's choice and is kept."""
    if "PYTHONMALLOC" in os.environ or _malloc_trim() is None:
        return
    os.environ["PYTHONMALLOC"] = ALLOCATOR
    for key, value in MALLOC_ENV.items():
        os.environ.setdefault(key, value)
    try:
        os.execv(sys.executable, sys.orig_argv)
    except OSError as exc:  # keep running as is rather than not at all
        log.warning("could not re-execute under PYTHONMALLOC=%s: %s", ALLOCATOR, exc)


def rss_bytes() -> int:
    """Resident set size now (Linux /proc; 0 where there is none: never over a limit)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


class MemoryLimiter:
    """Admission by RSS, as the OpenTelemetry Collector's memory_limiter does: over
    `limit` bytes, new records are refused (retry later) while any are queued, so the
    queue drains before more come in. An empty queue always admits one batch: what is
    resident then is state, which refusing traffic would never free."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self._at = float("-inf")
        self.rss = 0
        self.refusals = 0
        self._logged = float("-inf")

    def over(self) -> bool:
        if not self.limit:
            return False
        now = time.monotonic()
        if now - self._at >= CHECK_SECONDS:
            self._at, self.rss = now, rss_bytes()
        if self.rss <= self.limit:
            return False
        self.refusals += 1
        if now - self._logged >= 10.0:
            self._logged = now
            log.warning(
                "memory limit: RSS %d MB over pipeline.memory_limit_mib (%d MB); refusing "
                "new records until the queue drains (%d refusals so far)",
                self.rss >> 20,
                self.limit >> 20,
                self.refusals,
            )
        return True


class Trimmer:
    """`maybe()` after every batch and idle tick: trims at most every TRIM_SECONDS
    (a heap walk, ~60 ms on a 600 MB heap, in the worker thread)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._trim = _malloc_trim()
        self._clock = clock
        self._last = clock()

    def maybe(self) -> bool:
        """Trim when due; True when it did."""
        now = self._clock()
        if self._trim is None or now - self._last < TRIM_SECONDS:
            return False
        self._last = now
        self._trim(0)
        return True
