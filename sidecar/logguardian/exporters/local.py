"""Local store: the embedded default exporter. Annotations and incidents go to
SQLite under the state dir, so `make run` shows findings with no external server.

`export()` runs on the pipeline worker and only hands rows to a writer thread;
SQLite I/O never stalls processing. Readers (REST API) use their own connection
(WAL mode lets them read while the writer writes). Size and age are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..config import LocalStore as LocalStoreSettings
from ..metrics import Metrics
from ..pipeline import Batch
from ..record import json_safe
from ..signals import Annotation, Incident

if TYPE_CHECKING:
    from ..chain import BuildContext

log = logging.getLogger(__name__)

NAME = "local"
FILENAME = "store.sqlite3"
PRUNE_SECONDS = 5.0
MAX_PENDING_BATCHES = 10_000
DEAD_LETTER = "local-rejected.ndjson"
MAX_DEAD_LETTER_BYTES = 16 * 1024 * 1024

# Age bounds use the time a row was stored, not the record's own timestamp, so
# replaying old logs (benchmarks, demos) still keeps their findings.
SCHEMA_VERSION = 3
_SCHEMA = """
DROP TABLE IF EXISTS annotations;
DROP TABLE IF EXISTS incidents;
CREATE TABLE annotations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    ts REAL NOT NULL,
    service TEXT NOT NULL,
    stored_at REAL NOT NULL,
    doc BLOB NOT NULL
);
CREATE UNIQUE INDEX annotations_id ON annotations(id);
CREATE INDEX annotations_ts ON annotations(ts);
CREATE INDEX annotations_service_ts ON annotations(service, ts);
CREATE INDEX annotations_stored_at ON annotations(stored_at);
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    open INTEGER NOT NULL,
    last_seen REAL NOT NULL,
    stored_at REAL NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX incidents_stored_at ON incidents(stored_at);
"""

_Row = tuple[str, float, str, float, bytes]
_Work = tuple[list[_Row], list[tuple[str, str, int, float, float, bytes]]]


@dataclass(slots=True)
class _Unstored:
    """What the dead letter names when SQLite refused an encoded row."""

    id: Any


def annotation_doc(a: Annotation) -> dict[str, Any]:
    return {
        "id": a.id,
        "ts": a.ts,
        "service": a.service,
        "message": a.message,
        "level": a.level,
        "score": a.score,
        "reasons": [r.as_dict() for r in a.reasons],
        "template_id": a.template_id,
        "template": a.template_text,
        "session": a.session,
        "incident_id": a.incident_id,
        "attributes": a.attributes,
    }


_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
ORJSON_BUFFER = 4096


def _dumps(doc: dict[str, Any]) -> bytes:
    """orjson; a value it refuses (a lone surrogate from some upstream, a binary map
    key) falls back to the stdlib's escaping on a JSON-safe copy rather than costing
    the batch. Raises only for a document nothing can encode (dead-lettered)."""
    try:
        encoded = orjson.dumps(doc, default=str, option=_DUMPS_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        safe = json_safe(doc)
        return json.dumps(safe, default=str, ensure_ascii=False).encode("utf-8", "replace")
    # orjson returns its write buffer, at least 4 KiB: a ~500-byte annotation waiting
    # for the writer would hold 4 KiB (80 MB for a full 20,000-row backlog). A copy is
    # exact-size.
    return encoded if len(encoded) >= ORJSON_BUFFER else bytes(memoryview(encoded))


def _size(rows: list[_Row]) -> int:
    return sum(len(row[4]) for row in rows)


class LocalStore:
    name = NAME

    def __init__(self, path: Path, settings: LocalStoreSettings, metrics: Metrics):
        self.path = path
        self.settings = settings
        self.metrics = metrics
        self._queue: queue.Queue[_Work | None] = queue.Queue(MAX_PENDING_BATCHES)
        self._thread: threading.Thread | None = None
        self._read_local = threading.local()
        self._pending_lock = threading.Lock()
        self._pending_rows = 0
        self._pending_bytes = 0  # encoded size of those rows (a row may carry a 100 KB line)
        self._warned_at = 0.0
        self.dead_letter = path.parent / DEAD_LETTER
        path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                db.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- exporter (worker thread) -----------------------------------------------------------

    def export(self, batch: Batch) -> None:
        if not batch.annotations and not batch.incidents:
            return
        now = time.time()
        rows: list[_Row] = []
        for a in batch.annotations:
            doc = self._encode(annotation_doc, a)
            if doc is not None:
                rows.append((a.id, a.ts, a.service, now, doc))
        incidents = []
        for i in batch.incidents:
            doc = self._encode(Incident.as_dict, i)
            if doc is not None:
                incidents.append((i.id, i.service, int(i.open), i.last_seen, now, doc))
        with self._pending_lock:
            # The writer is behind (slow disk, a flood of findings): the backlog is
            # bounded in rows and in bytes, whatever the batch sizes.
            room = max(0, self.settings.max_pending_rows - self._pending_rows)
            room_bytes = self.settings.max_pending_bytes - self._pending_bytes
            kept = size = 0
            for row in rows[:room]:
                if size + len(row[4]) > room_bytes:
                    break
                size += len(row[4])
                kept += 1
            if kept < len(rows):
                lost = len(rows) - kept
                rows = rows[:kept]
                self.metrics.exporter_dropped.labels(NAME, "backlog_full").inc(lost)
                self._warn_backlog(lost)
            self._pending_rows += len(rows)
            self._pending_bytes += size
        if not rows and not incidents:
            return
        try:
            self._queue.put_nowait((rows, incidents))
        except queue.Full:
            with self._pending_lock:
                self._pending_rows -= len(rows)
                self._pending_bytes -= size
            # The writer is stuck (disk?) for ~10k batches: count and say so rather
            # than stall detection or grow without bound.
            self.metrics.exporter_errors.labels(NAME).inc()
            log.error(
                "local store: writer backlog full, %d annotations and %d incident "
                "updates not stored",
                len(rows),
                len(incidents),
            )

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def _warn_backlog(self, lost: int) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 10.0:
            self._warned_at = now
            log.warning(
                "local store: writer backlog at %d rows, %d annotations not stored",
                self.settings.max_pending_rows,
                lost,
            )

    def _encode(self, to_doc: Callable[[Any], dict[str, Any]], item: Any) -> bytes | None:
        """One document's JSON; an item nothing can encode is dead-lettered alone."""
        try:
            return _dumps(to_doc(item))
        except Exception as exc:  # any failure here must cost this item only
            self._dead_letter(item, exc)
            return None

    def _dead_letter(self, item: Any, exc: Exception) -> None:
        self.metrics.exporter_dropped.labels(NAME, "unencodable").inc()
        log.warning(
            "local store: %s %s not storable (%s); dead-lettered to %s",
            type(item).__name__,
            getattr(item, "id", "?"),
            type(exc).__name__,
            self.dead_letter,
        )
        line = orjson.dumps(
            {
                "id": str(getattr(item, "id", "")),
                "error": f"{type(exc).__name__}: {exc}"[:500],
                "item": repr(item)[:10_000] if not isinstance(exc, RecursionError) else "",
                "at": time.time(),
            }
        )
        try:
            if self.dead_letter.exists() and (
                self.dead_letter.stat().st_size > MAX_DEAD_LETTER_BYTES
            ):
                return
            with open(self.dead_letter, "ab") as f:
                f.write(line + b"\n")
        except (OSError, RecursionError):
            pass

    async def start(self) -> None:
        self._thread = threading.Thread(target=self._write_loop, name="local-store", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def flush(self) -> None:
        """Block until every exported batch is written (tests, shutdown)."""
        self._queue.join()

    async def aflush(self) -> None:
        await asyncio.to_thread(self._queue.join)

    # -- writer thread ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        db = self._connect()
        last_prune = 0.0
        prune_every = min(PRUNE_SECONDS, self.settings.max_age_seconds / 2)
        try:
            while True:
                work = self._queue.get()
                if work is None:
                    self._queue.task_done()
                    return
                items = [work]
                # Coalesce whatever else is waiting into one transaction.
                stop = False
                while len(items) < 256:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    items.append(more)
                try:
                    self._write_or_split(db, items)
                    now = time.time()
                    if now - last_prune >= prune_every:
                        self._prune(db, now)
                        last_prune = now
                except sqlite3.Error:
                    self.metrics.exporter_errors.labels(NAME).inc()
                    log.exception("local store: write failed")
                finally:
                    with self._pending_lock:
                        self._pending_rows -= sum(len(rows) for rows, _ in items)
                        self._pending_bytes -= sum(_size(rows) for rows, _ in items)
                    for _ in range(len(items) + (1 if stop else 0)):
                        self._queue.task_done()
                if stop:
                    return
        finally:
            db.close()

    def _write_or_split(self, db: sqlite3.Connection, items: list[_Work]) -> None:
        """One transaction for everything waiting; if SQLite refuses it (a value it
        cannot bind), row by row, so only the offending row is dead-lettered."""
        try:
            self._write(db, items)
        except (sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.IntegrityError):
            for rows, incidents in items:
                for row in rows:
                    self._write_one(db, [([row], [])], row[0])
                for inc in incidents:
                    self._write_one(db, [([], [inc])], inc[0])

    def _write_one(self, db: sqlite3.Connection, work: list[_Work], item_id: Any) -> None:
        try:
            self._write(db, work)
        except (sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.IntegrityError) as exc:
            self._dead_letter(_Unstored(item_id), exc)

    def _write(self, db: sqlite3.Connection, items: list[_Work]) -> None:
        with db:
            for rows, incidents in items:
                if rows:
                    db.executemany(
                        "INSERT OR IGNORE INTO annotations(id, ts, service, stored_at, doc) "
                        "VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                if incidents:
                    db.executemany(
                        "INSERT INTO incidents(id, service, open, last_seen, stored_at, doc) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                        "service=excluded.service, open=excluded.open, "
                        "last_seen=excluded.last_seen, stored_at=excluded.stored_at, "
                        "doc=excluded.doc",
                        incidents,
                    )
        self._trim_count(db)

    def _trim_count(self, db: sqlite3.Connection) -> None:
        """Keep at most `max_annotations` rows: seq only grows, so everything at or
        below max(seq) - limit is older than the newest `limit` rows."""
        with db:
            db.execute(
                "DELETE FROM annotations WHERE seq <= (SELECT MAX(seq) FROM annotations) - ?",
                (self.settings.max_annotations,),
            )

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        cutoff = now - self.settings.max_age_seconds
        with db:
            db.execute("DELETE FROM annotations WHERE stored_at < ?", (cutoff,))
            db.execute("DELETE FROM incidents WHERE open = 0 AND stored_at < ?", (cutoff,))
            # Incidents are few, but an endless stream of resolved ones is still bounded.
            db.execute(
                "DELETE FROM incidents WHERE open = 0 AND id IN (SELECT id FROM incidents "
                "WHERE open = 0 ORDER BY last_seen DESC LIMIT -1 OFFSET ?)",
                (self.settings.max_annotations,),
            )

    # -- queries (any thread) --------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._read_local, "db", None)
        if db is None:
            db = self._read_local.db = self._connect()
        return db

    def anomalies(
        self, service: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Most recent first."""
        where, args = [], []
        if service is not None:
            where.append("service = ?")
            args.append(service)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        sql = "SELECT doc FROM annotations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, seq DESC LIMIT ?"
        args.append(max(0, int(limit)))
        return [orjson.loads(doc) for (doc,) in self._reader().execute(sql, args)]

    def incidents(self, open_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        """Open first, then most recently active."""
        sql = "SELECT doc FROM incidents"
        if open_only:
            sql += " WHERE open = 1"
        sql += " ORDER BY open DESC, last_seen DESC LIMIT ?"
        return [orjson.loads(doc) for (doc,) in self._reader().execute(sql, (max(0, int(limit)),))]

    def close(self) -> None:
        db = getattr(self._read_local, "db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            self._read_local.db = None


def build(ctx: BuildContext) -> None:
    """Chain factory (`exporters.local`, always on): findings are queryable with no
    external server."""
    store = LocalStore(ctx.state_dir / FILENAME, ctx.settings.exporters.local, ctx.metrics)
    ctx.components.exporters.append(store)
    ctx.parts.add(store)
