"""Handing freed memory back to the OS after a burst (issue 13: RSS must come back
down after a flood, not stay at its peak).

CPython's own small-object allocator (pymalloc) returns a 1 MiB arena only when every
object in it is dead. After a flood, the few objects that outlive it (open sessions,
templates, stored rows) are scattered over every arena, so RSS stays at the flood's
peak: a 500k-session-key flood left `serve` at 350 MB with pymalloc, and at 220 MB
with the system allocator plus `malloc_trim` once the sessions had closed.
`logguardian serve` therefore re-executes itself under glibc malloc
(`PYTHONMALLOC=malloc`) unless PYTHONMALLOC is already set, and the worker calls
`malloc_trim(0)` at most every `TRIM_SECONDS`, which hands back the free pages in the
middle of the heap too. bench/limits.py gives the figures and bench/e2e.py the cost.
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


class Trimmer:
    """`maybe()` after every batch and idle tick: trims at most every TRIM_SECONDS
    (a heap walk, ~60 ms on a 600 MB heap, in the worker thread)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._trim = _malloc_trim()
        self._clock = clock
        self._last = clock()
        self.trims = 0

    def maybe(self) -> bool:
        """Trim when due; True when it did."""
        now = self._clock()
        if self._trim is None or now - self._last < TRIM_SECONDS:
            return False
        self._last = now
        self._trim(0)
        self.trims += 1
        return True
