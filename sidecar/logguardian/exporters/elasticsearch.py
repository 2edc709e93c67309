"""Elasticsearch exporter (DESIGN §8): annotations as ECS documents in the data stream
`logs-logguardian.anomalies-default`, optionally every record (enriched mode).

`export()` runs on the pipeline worker: it renders documents and hands them over,
nothing else. A task on the event loop ships them with the async bulk helper in
size/time-bounded chunks, reads every item's status (a 200 bulk can hold failures),
backs off on 429/5xx/unreachable, and moves what it cannot deliver to a bounded
on-disk spool that drains first, in order, when Elasticsearch is back. Each document
has a deterministic `_id` and goes in with `create`, so a resend after an unclear
outcome answers 409 and is never written twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.helpers import async_streaming_bulk

from ..components import cancel
from ..config import ElasticsearchSettings
from ..metrics import Metrics
from ..pipeline import Batch
from .delivery import Backoff
from .es_documents import COPIED_FIELDS, SEP, annotation_doc, enriched_doc, expand, item
from .es_template import install_templates
from .spool import Spool

if TYPE_CHECKING:
    from ..chain import BuildContext

log = logging.getLogger(__name__)

NAME = "elasticsearch"
MEMORY_ITEMS = 20_000  # beyond this, waiting documents go to the spool instead of RAM
REQUEST_TIMEOUT = 30.0  # a busy node can take seconds per bulk; shorter spools for nothing
BACKOFF_START = 0.5
BACKOFF_MAX = 10.0
STOP_GRACE_SECONDS = 10.0
DEAD_LETTER_MAX_BYTES = 16 * 1024 * 1024
# Record attributes copied next to the annotation (ECS field sets a log already has).


def _retryable(status: Any) -> bool:
    return not isinstance(status, int) or status in (408, 429) or status >= 500


class ElasticsearchExporter:
    name = NAME

    def __init__(
        self,
        settings: ElasticsearchSettings,
        state_dir: Path,
        metrics: Metrics,
        memory_items: int = MEMORY_ITEMS,
    ):
        if not settings.url:
            raise ValueError("exporters.elasticsearch.url is not set")
        self.settings = settings
        self.metrics = metrics
        self.memory_items = memory_items
        self.spool = Spool(state_dir / "spool" / NAME, settings.spool_max_bytes)
        self.dead_letter = state_dir / f"{NAME}-rejected.ndjson"
        self.client: AsyncElasticsearch | None = None
        self.connected = False  # last request reached Elasticsearch
        self.last_error: str | None = None
        self._inbox: collections.deque[bytes] = collections.deque()
        self._inflight: list[bytes] = []
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._templates_ok = False
        self._pending = metrics.exporter_pending.labels(NAME)
        self._spool_bytes = metrics.exporter_spool_bytes.labels(NAME)
        self._sent = metrics.exporter_sent.labels(NAME)
        self._errors = metrics.exporter_errors.labels(NAME)
        self._update_gauges()

    # -- worker thread -------------------------------------------------------------------

    def export(self, batch: Batch) -> None:
        s = self.settings
        items = [item(s.data_stream, a.id, annotation_doc(a)) for a in batch.annotations]
        if s.enriched and batch.records:
            stream = s.enriched_data_stream
            items.extend(
                item(stream, uuid.uuid4().hex, enriched_doc(r, batch, i))
                for i, r in enumerate(batch.records)
            )
        if not items:
            return
        self._inbox.extend(items)  # deque.extend is atomic: no lock with the loop thread
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._arrived)

    # -- event loop ----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._inbox) + len(self._inflight) + len(self.spool)

    def _update_gauges(self) -> None:
        self._pending.set(self.pending)
        self._spool_bytes.set(self.spool.bytes)

    def _arrived(self) -> None:
        if len(self._inbox) > self.memory_items:
            self._spill()
        self._update_gauges()
        if self._wake is not None:
            self._wake.set()

    def _spill(self) -> None:
        """Inbox → spool, oldest first. The spool always holds older documents than
        the inbox, so draining spool-then-inbox keeps the order."""
        # popleft, not clear(): the worker may append while we copy.
        waiting = [self._inbox.popleft() for _ in range(len(self._inbox))]
        if waiting:
            self._to_spool(waiting)

    def _to_spool(self, items: list[bytes]) -> None:
        taken = self.spool.append(items)
        if taken < len(items):
            lost = len(items) - taken
            self.metrics.exporter_dropped.labels(NAME, "spool_full").inc(lost)
            log.error(
                "elasticsearch spool full (%d bytes): dropped %d newest documents",
                self.spool.bytes,
                lost,
            )

    def _client(self) -> AsyncElasticsearch:
        s = self.settings
        kwargs: dict[str, Any] = {
            "request_timeout": REQUEST_TIMEOUT,
            "max_retries": 0,
            "retry_on_timeout": False,
        }
        if s.api_key:
            kwargs["api_key"] = s.api_key
        elif s.username:
            kwargs["basic_auth"] = (s.username, s.password or "")
        if s.ca_certs:
            kwargs["ca_certs"] = str(s.ca_certs)
        if not s.verify_certs:
            kwargs["verify_certs"] = False
            kwargs["ssl_show_warn"] = False
        return AsyncElasticsearch(s.url, **kwargs)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.client = self._client()
        self._task = asyncio.create_task(self._run(), name="elasticsearch-exporter")

    async def stop(self) -> None:
        """Deliver what is waiting if Elasticsearch answers within a grace period;
        whatever is still undelivered then is in the spool for the next start."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_SECONDS)
            except TimeoutError:
                await cancel(self._task)
        if self._inflight:
            self._to_spool(self._inflight)
            self._inflight = []
        self._spill()
        self._update_gauges()
        self.spool.close()
        if self.client is not None:
            await self.client.close()

    def status(self) -> tuple[bool, str]:
        """Readiness detail: an unreachable Elasticsearch is absorbed by the spool, so it
        only makes the sidecar unready once the spool is nearly full."""
        full = self.spool.bytes >= 0.9 * self.settings.spool_max_bytes
        state = "connected" if self.connected else f"unreachable ({self.last_error})"
        return (
            not full,
            f"{state}; {self.pending} documents waiting, spool {self.spool.bytes} bytes",
        )

    async def _run(self) -> None:
        assert self._wake is not None
        backoff = Backoff(BACKOFF_START, BACKOFF_MAX)
        while True:
            if len(self.spool):
                self._spill()
                ok = await self._drain_spool_head()
            elif self._inbox:
                await self._gather()
                ok = await self._send_inbox_chunk()
            elif self._closing:
                return
            else:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.flush_seconds)
                continue
            self._update_gauges()
            if ok:
                backoff.reset()
            else:
                if self._closing:
                    return  # stop(): what is left stays spooled for the next start
                await asyncio.sleep(backoff.failed())

    async def _gather(self) -> None:
        """Time-bounded batching: wait up to flush_seconds for a full chunk."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.flush_seconds
        while (
            len(self._inbox) < self.settings.batch_docs
            and not self._closing
            and not len(self.spool)
        ):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _send_inbox_chunk(self) -> bool:
        n = min(len(self._inbox), self.settings.batch_docs)
        self._inflight = [self._inbox.popleft() for _ in range(n)]
        retry = await self._deliver(self._inflight)
        self._inflight = []
        if retry:
            self._to_spool(retry)
            self._spill()
            return False
        return True

    async def _drain_spool_head(self) -> bool:
        items, cursor = self.spool.peek(self.settings.batch_docs)
        if not items:
            self.spool.commit(cursor)
            return True
        retry = await self._deliver(items)
        if retry:
            return False  # the head stays; delivered items answer 409 on the resend
        self.spool.commit(cursor)
        return True

    async def _ensure_templates(self) -> None:
        """Install the index template(s) once per process; PUT is idempotent."""
        assert self.client is not None
        s = self.settings
        streams = [s.data_stream] + ([s.enriched_data_stream] if s.enriched else [])
        await install_templates(self.client, streams)
        self._templates_ok = True

    async def _deliver(self, items: list[bytes]) -> list[bytes]:
        """One bulk request. Returns the items worth retrying (all of them when the
        request itself failed); rejected items are retried once stripped of copied
        fields (a mapping clash there must not lose the finding), then dead-lettered."""
        assert self.client is not None
        try:
            if not self._templates_ok:
                await self._ensure_templates()
            results = await self._bulk(items)
        except ApiError as exc:
            if exc.meta.status == 413:  # body over http.max_content_length: halve it
                if len(items) == 1:
                    self._dead_letter([(items[0], "413 request entity too large")])
                    return []
                half = len(items) // 2
                return await self._deliver(items[:half]) + await self._deliver(items[half:])
            self._failed(exc)
            return items
        except Exception as exc:  # unreachable, timeout: the whole chunk waits
            self._failed(exc)
            return items
        retry: list[bytes] = []
        rejected: list[tuple[bytes, Any]] = []
        created = 0
        for raw, (ok, info) in zip(items, results, strict=True):
            outcome = next(iter(info.values()))
            status = outcome.get("status")
            if ok:
                created += 1
            elif status == 409:
                pass  # already written by an earlier attempt
            elif _retryable(status):
                retry.append(raw)
            else:
                rejected.append((raw, outcome.get("error")))
        self.connected = True
        self._sent.inc(created)
        if rejected:
            retry.extend(await self._handle_rejected(rejected))
        if retry:
            self._errors.inc()
            self.last_error = f"{len(retry)} of {len(items)} documents refused for now"
        return retry

    async def _bulk(self, items: list[bytes]) -> list[tuple[bool, dict[str, Any]]]:
        assert self.client is not None
        results: list[tuple[bool, dict[str, Any]]] = []
        async for ok, info in async_streaming_bulk(
            self.client,
            items,
            chunk_size=len(items),
            max_chunk_bytes=50 * 1024 * 1024,
            expand_action_callback=expand,
            raise_on_error=False,
            raise_on_exception=True,
            max_retries=0,
            yield_ok=True,
        ):
            results.append((ok, info))
        return results

    async def _handle_rejected(self, rejected: list[tuple[bytes, Any]]) -> list[bytes]:
        dead: list[tuple[bytes, Any]] = []
        stripped: list[bytes] = []
        for raw, error in rejected:
            action, doc = expand(raw)
            parsed = orjson.loads(doc)
            extra = [k for k in parsed if k.split(".", 1)[0] in COPIED_FIELDS]
            if not extra:
                dead.append((raw, error))
                continue
            for key in extra:
                del parsed[key]
            stripped.append(action + SEP + orjson.dumps(parsed))
        retry: list[bytes] = []
        if stripped:
            try:
                results = await self._bulk(stripped)
            except Exception as exc:
                self._failed(exc)
                retry = stripped
            else:
                for raw, (ok, info) in zip(stripped, results, strict=True):
                    outcome = next(iter(info.values()))
                    status = outcome.get("status")
                    if ok:
                        self._sent.inc()
                    elif status == 409:
                        pass
                    elif _retryable(status):
                        retry.append(raw)
                    else:
                        dead.append((raw, outcome.get("error")))
        if dead:
            self._dead_letter(dead)
        return retry

    def _dead_letter(self, dead: Iterable[tuple[bytes, Any]]) -> None:
        dead = list(dead)
        self.metrics.exporter_dropped.labels(NAME, "rejected").inc(len(dead))
        self._errors.inc()
        first = dead[0][1]
        log.error(
            "elasticsearch rejected %d documents (kept in %s): %s",
            len(dead),
            self.dead_letter,
            first,
        )
        try:
            size = self.dead_letter.stat().st_size if self.dead_letter.exists() else 0
            if size < DEAD_LETTER_MAX_BYTES:
                with self.dead_letter.open("ab") as fh:
                    for raw, err in dead:
                        action, doc = expand(raw)
                        fh.write(
                            orjson.dumps(
                                {
                                    "action": orjson.loads(action),
                                    "doc": orjson.loads(doc),
                                    "error": err,
                                }
                            )
                            + b"\n"
                        )
        except OSError as exc:
            log.error("cannot write %s: %s", self.dead_letter, exc)

    def _failed(self, exc: Exception) -> None:
        if self.connected or self.last_error is None:
            log.warning("elasticsearch unavailable, spooling: %s", exc)
        self.connected = False
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self._errors.inc()


def build(ctx: BuildContext) -> None:
    """Chain factory (`exporters.elasticsearch`, on when `url` is set)."""
    es = ElasticsearchExporter(ctx.settings.exporters.elasticsearch, ctx.state_dir, ctx.metrics)
    ctx.components.exporters.append(es)
    ctx.components.readiness["elasticsearch"] = es.status
    ctx.parts.add(es)
