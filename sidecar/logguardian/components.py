"""The component model: what a receiver, a processor and an exporter are, and the
typed registry through which parts find each other.

Receivers feed a `Consumer` (the pipeline's admission side, nothing more); processors
run on the worker thread in chain order; exporters take processed batches. Any of
them may have `async start()` / `async stop()`: the pipeline starts processors and
exporters before the first batch and stops them after the last one, so a stage that
keeps state (miner, detection) writes its final snapshot in `stop()`.

This module imports nothing at runtime beyond the standard library, so every part of
the package (core, receivers, server, API, CLI) can depend on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from .auth import HttpAuth
    from .config import LimitsSettings
    from .metrics import Metrics
    from .pipeline import Batch
    from .record import Record
    from .verdict import Scored

log = logging.getLogger(__name__)

T = TypeVar("T")

ReadinessCheck = Callable[[], tuple[bool, str]]


class Processor(Protocol):
    """One stage of the chain. Runs on the worker thread; must not block on I/O."""

    name: str

    def process(self, batch: Batch) -> None: ...


class Exporter(Protocol):
    """Ships a processed batch somewhere. `export` runs on the worker thread and must
    only enqueue (never wait on the network); a `stop` flushes what is pending."""

    name: str

    def export(self, batch: Batch) -> None: ...


@runtime_checkable
class Startable(Protocol):
    async def start(self) -> None: ...


@runtime_checkable
class Stoppable(Protocol):
    async def stop(self) -> None: ...


@runtime_checkable
class Holding(Protocol):
    """A processor that may hold records back across batches (the exception
    rejoiner): at shutdown it hands them back to run through the whole chain."""

    def release_held(self) -> list[Record]: ...


@runtime_checkable
class Service(Protocol):
    """A part outside the chain with a life of its own (a poller, a watcher)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def start_parts(parts: Iterable[object]) -> None:
    """`start()` every part that has one, in order."""
    for part in parts:
        if isinstance(part, Startable):
            await part.start()


async def stop_parts(parts: Iterable[object]) -> None:
    """`stop()` every part that has one, in order; one failing stop never keeps the
    others from flushing."""
    for part in parts:
        if isinstance(part, Stoppable):
            try:
                await part.stop()
            except Exception:
                log.exception("%s failed to stop cleanly", getattr(part, "name", part))


class Consumer(Protocol):
    """What a receiver may do with the pipeline: queue records (or learn that there is
    no room, fairly shared between receivers) and count what it refused. `Pipeline`
    is one; with its write-ahead log on, True means the records are in the log."""

    metrics: Metrics
    capacity: int

    @property
    def depth(self) -> int: ...

    def refuses(self, receiver: str) -> bool:
        """Cheap check before reading a body: would even one record be refused?"""
        ...

    async def admit(self, records: list[Record], receiver: str) -> bool:
        """Queue all or none, now: False means "retry later" (HTTP 503, gRPC
        RESOURCE_EXHAUSTED)."""
        ...

    async def put(self, records: list[Record], receiver: str, timeout: float | None = None) -> bool:
        """Wait for room, then queue (stream receivers withhold the ack meanwhile);
        False on timeout or shutdown."""
        ...


Scorer = Callable[[list["Record"]], Awaitable[list["Scored"]]]


@dataclass(frozen=True)
class ReceiverContext:
    """Everything a receiver is given besides its own settings section."""

    consumer: Consumer
    service_fields: Sequence[str]
    # True while every readiness check passes (gRPC health mirrors /readyz).
    ready: Callable[[], bool] = lambda: True
    # Synchronous scoring through the chain, for receivers that offer it (gRPC Score).
    score: Scorer | None = None
    # The HTTP server's credentials (`receivers.http`), which `Routes` receivers honour.
    http_auth: HttpAuth | None = None
    # What one body, frame, request or record may hold (`limits`, on every receiver).
    limits: LimitsSettings | None = None
    # The chain's parts, for a receiver that works with one (Kafka's offset tracker).
    parts: Registry | None = None
    # Held while processors run; a receiver that reads or replaces chain state (Kafka
    # handing a partition's state over) takes it, as the API does.
    lock: threading.Lock | None = None

    @property
    def metrics(self) -> Metrics:
        return self.consumer.metrics


@runtime_checkable
class Listener(Protocol):
    """A receiver with a socket of its own; `port` is the bound port once started."""

    name: str
    port: int | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Routes(Protocol):
    """A receiver served by the sidecar's HTTP server (`receivers.http` host/port)."""

    name: str

    def add_routes(self, app: Any) -> None: ...


Receiver = Listener | Routes


class Registry:
    """Named parts, looked up by their type: `parts.get(LocalStore)` is a
    `LocalStore | None` to a type checker, and a misspelling is an import error
    rather than a silent `None`."""

    def __init__(self) -> None:
        self._parts: dict[type, object] = {}

    def add(self, part: T) -> T:
        kind = type(part)
        if kind in self._parts:
            raise ValueError(f"a {kind.__name__} is already registered")
        self._parts[kind] = part
        return part

    def get(self, kind: type[T]) -> T | None:
        found = self._parts.get(kind)
        if found is None:
            found = next((p for p in self._parts.values() if isinstance(p, kind)), None)
        return found  # type: ignore[return-value]

    def require(self, kind: type[T]) -> T:
        found = self.get(kind)
        if found is None:
            raise LookupError(f"no {kind.__name__} is running")
        return found

    def __contains__(self, kind: type) -> bool:
        return self.get(kind) is not None


@dataclass
class Components:
    """What `chain.build_components` wires from settings, in chain order."""

    processors: list[Processor] = field(default_factory=list)
    exporters: list[Exporter] = field(default_factory=list)
    # Parts outside the chain that still run in the sidecar (a poller, a watcher):
    # started once the pipeline runs, stopped after it has drained.
    services: list[Service] = field(default_factory=list)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    parts: Registry = field(default_factory=Registry)


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel a component's background task and wait until it has ended, so `stop()`
    returns with nothing of the component still running."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
