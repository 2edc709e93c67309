"""Record: the one normalized shape every receiver produces (DESIGN §3, a contract).

Receivers hand `normalize()` whatever map the shipper sent; everything downstream
(mining, detection, exporters) only ever sees `Record`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard

import orjson

MESSAGE_KEYS: tuple[str, ...] = ("log", "message", "msg", "short_message")
TIME_KEYS: tuple[str, ...] = ("date", "@timestamp", "time", "timestamp")
LEVEL_KEYS: tuple[str, ...] = ("level", "log.level", "severity", "severity_text", "loglevel")
DEFAULT_SERVICE_FIELDS: tuple[str, ...] = (
    "service.name",
    "service",
    "kubernetes.labels.app",
    "kubernetes.container_name",
    "app",
)
UNKNOWN_SERVICE = "unknown"
# OTel SDKs default service.name to "unknown_service[:process]": a default, not a
# name, so it never counts as one (whatever the receiver).
OTEL_UNKNOWN_SERVICE = "unknown_service"
# Per-record bounds (settings `limits.*` override them): a record nested deeper or
# larger than this is refused alone, before anything downstream (repr, mining,
# JSON encoding in the exporters) has to cope with it.
MAX_DEPTH = 32
MAX_RECORD_BYTES = 1024 * 1024

ERROR_LEVELS = frozenset(("error", "fatal"))  # canonical levels that mean a failure
# Canonical level names; keys are lower-cased spellings seen in the wild
# (syslog keywords, log4j, Go/zap, GELF numeric syslog severities).
_LEVEL_ALIASES: dict[str, str] = {
    "trace": "trace",
    "debug": "debug",
    "dbg": "debug",
    "fine": "debug",
    "finer": "trace",
    "info": "info",
    "information": "info",
    "informational": "info",
    "notice": "info",
    "inf": "info",
    "warn": "warn",
    "warning": "warn",
    "wrn": "warn",
    "error": "error",
    "err": "error",
    "severe": "error",
    "fatal": "fatal",
    "critical": "fatal",
    "crit": "fatal",
    "alert": "fatal",
    "emerg": "fatal",
    "emergency": "fatal",
    "panic": "fatal",
    # GELF/syslog numeric severities
    "0": "fatal",
    "1": "fatal",
    "2": "fatal",
    "3": "error",
    "4": "warn",
    "5": "info",
    "6": "info",
    "7": "debug",
    # One-letter levels of Android logcat, glog and klog (`E0412 ...`, `W/Tag: ...`)
    "v": "trace",
    "verbose": "trace",
    "d": "debug",
    "i": "info",
    "w": "warn",
    "e": "error",
    "f": "fatal",
}
# Only obvious, upper-case level words count when inferring from the message text,
# so "no errors found" stays unlevelled.
# (The lookahead lets the scanner skip most positions cheaply: ~2x faster.)
_LEVEL_IN_TEXT = re.compile(
    r"(?=[CDEFIPSTW])\b(FATAL|CRITICAL|PANIC|ERROR|SEVERE|WARN(?:ING)?|INFO|DEBUG|TRACE)\b"
)


class RecordTooLarge(ValueError):
    """A record over the size or nesting bound; counted as `too_large`."""


# Added to a measured size when the value needs `json_safe` (sizes stay far below it).
_DIRTY = 1 << 48


def _scalar(value: Any) -> int:
    cls = value.__class__
    if cls is int or cls is float or cls is bool or value is None:
        return 8
    if cls is bytes:
        return len(value) + _DIRTY
    return 8 + _DIRTY


def _measure(value: Any, depth: int, max_depth: int) -> int:
    """Approximate encoded size of a container, plus `_DIRTY` for each part no
    exporter could encode as is; raises RecordTooLarge past `max_depth` levels (a
    doc's own fields are level 1). One pass: strings are handled inline (this runs
    per record on the ingest path), only containers recurse."""
    if depth >= max_depth:
        raise RecordTooLarge(f"fields nested deeper than {max_depth} levels")
    depth += 1
    size = 2
    if value.__class__ is dict:
        for key, item in value.items():
            cls = item.__class__
            if cls is str:
                size += len(item) + 2
            elif cls is dict or cls is list:
                size += _measure(item, depth, max_depth)
            else:
                size += _scalar(item)
            size += len(key) if key.__class__ is str else _DIRTY
        return size
    for item in value:
        cls = item.__class__
        if cls is str:
            size += len(item) + 3
        elif cls is dict or cls is list:
            size += _measure(item, depth, max_depth) + 1
        else:
            size += _scalar(item) + 1
    return size


def check_bounds(fields: dict[str, Any], max_depth: int, max_bytes: int) -> None:
    """Raise RecordTooLarge when a record's fields are over the size or nesting
    bound (for receivers that build Records without `Normalizer`)."""
    size = _measure(fields, 0, max_depth) % _DIRTY
    if size > max_bytes:
        raise RecordTooLarge(f"record of ~{size} bytes is over the {max_bytes}-byte limit")


def _text_key(key: Any) -> str:
    """Map keys become text: msgpack allows binary, numeric, nil keys, JSON does not."""
    if key.__class__ is bytes:
        return key.decode("utf-8", "replace")
    return str(key)


def json_safe(value: Any) -> Any:
    """Field values every exporter can encode: text keys, bytes as text, msgpack
    extension values as their repr. Only walks containers that need it."""
    cls = value.__class__
    if cls is dict:
        return {(k if k.__class__ is str else _text_key(k)): json_safe(v) for k, v in value.items()}
    if cls is list or cls is tuple:
        return [json_safe(v) for v in value]
    if cls is bytes:
        return value.decode("utf-8", "replace")
    if cls in (str, int, float, bool) or value is None:
        return value
    return repr(value)


@dataclass(slots=True)
class Record:
    ts: float
    message: str
    service: str
    level: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    # Stable identity at the source (Kafka: topic/partition/offset/index), set by
    # replayable receivers: an annotation of a replayed record then gets the same id.
    origin: str | None = None
    # Approximate encoded size of the shipper map (set by `Normalizer`, 0 = not
    # measured): what the pipeline queue's memory bound counts.
    size: int = 0


def field_reader(path: str) -> Callable[[dict[str, Any]], Any]:
    """Reads the value at a dotted path, trying the flat key first (`{"service.name":
    x}`) and then nested maps (`{"service": {"name": x}}`); the path is split once,
    not per record."""
    flat, parts = _compile_path(path)
    return lambda doc: _lookup_compiled(doc, flat, parts)


def names_a_service(value: Any) -> TypeGuard[str]:
    """A service field's value counts when it is a non-empty string other than an OTel
    SDK's `unknown_service[:process]` default."""
    return value.__class__ is str and value != "" and not value.startswith(OTEL_UNKNOWN_SERVICE)


def canonical_level(value: Any) -> str | None:
    if value is None:
        return None
    return _LEVEL_ALIASES.get(str(value).strip().lower())


def infer_level(message: str) -> str | None:
    match = _LEVEL_IN_TEXT.search(message, 0, 200)
    return canonical_level(match.group(1)) if match else None


def parse_time(value: Any) -> float | None:
    """Epoch seconds from the timestamp shapes shippers send.

    Numbers are seconds, or ms/µs/ns when they are too large to be seconds
    (Fluent Bit `epoch_ms`, OTLP nanos). Strings are ISO-8601 with any number of
    fraction digits (Logstash 8 prints 3 to 9), `Z` or an offset; naive times
    (Fluent Bit `java_sql_timestamp`) are UTC.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            v = float(value)
        except OverflowError:
            return None
        if not 0 < v < 1e20:  # also refuses NaN and infinity
            return None
        if v > 1e17:
            return v / 1e9
        if v > 1e14:
            return v / 1e6
        if v > 1e11:
            return v / 1e3
        return v if v > 0 else None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if len(text) < 10 or text[4] != "-":  # not extended ISO-8601: maybe a number
            try:
                return parse_time(float(text))
            except ValueError:
                pass
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return None


def message_text(value: Any) -> str:
    """Total: any value becomes text (a container too deep for repr is refused)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return ""
    try:
        return str(value)
    except RecursionError:
        raise RecordTooLarge("message nested too deeply") from None


def _compile_path(path: str) -> tuple[str, tuple[str, ...] | None]:
    return path, (tuple(path.split(".")) if "." in path else None)


def _lookup_compiled(doc: dict[str, Any], path: str, parts: tuple[str, ...] | None) -> Any:
    value = doc.get(path)
    if value is not None or parts is None:
        return value
    current: Any = doc
    for part in parts:
        if not isinstance(current, dict):
            return None
        current = current.get(part)
        if current is None:
            return None
    return current


# Per-shape lookup plan: message keys, time keys, service paths, level paths that
# can match (a path's parts are None when the flat key itself is present).
_Plan = tuple[
    tuple[str, ...],
    tuple[str, ...],
    tuple[tuple[str, tuple[str, ...] | None], ...],
    tuple[tuple[str, tuple[str, ...] | None], ...],
]
MAX_SHAPES = 1024


class Normalizer:
    """`normalize()` with the field paths compiled once: receivers keep one per
    settings. A record usually has a handful of keys, so one set intersection
    with every name we could look at decides which lookups are worth doing."""

    __slots__ = (
        "_heads",
        "_level_paths",
        "_plans",
        "_service_paths",
        "max_bytes",
        "max_depth",
        "source",
    )

    def __init__(
        self,
        source: str,
        service_fields: Sequence[str] = DEFAULT_SERVICE_FIELDS,
        max_depth: int = MAX_DEPTH,
        max_bytes: int = MAX_RECORD_BYTES,
    ):
        self.source = source
        self.max_depth = max_depth
        self.max_bytes = max_bytes
        self._service_paths = tuple(_compile_path(p) for p in service_fields)
        self._level_paths = tuple(_compile_path(p) for p in LEVEL_KEYS)
        heads = {*MESSAGE_KEYS, *TIME_KEYS}
        for path, parts in (*self._service_paths, *self._level_paths):
            heads.add(path)
            if parts:
                heads.add(parts[0])
        self._heads = frozenset(heads)
        self._plans: dict[frozenset[str], _Plan] = {}

    def _plan(self, present: frozenset[str]) -> _Plan:
        """Which lookups can succeed for records with these keys; shippers send a few
        shapes over and over, so this runs once per shape."""
        if len(self._plans) >= MAX_SHAPES:
            self._plans.clear()
        plan = self._plans[present] = (
            tuple(k for k in MESSAGE_KEYS if k in present),
            tuple(k for k in TIME_KEYS if k in present),
            tuple(
                (path, None if path in present else parts)
                for path, parts in self._service_paths
                if path in present or (parts is not None and parts[0] in present)
            ),
            tuple(
                (path, None if path in present else parts)
                for path, parts in self._level_paths
                if path in present or (parts is not None and parts[0] in present)
            ),
        )
        return plan

    def __call__(
        self,
        doc: Mapping[str, Any],
        ts: float | None = None,
        tag: str | None = None,
        now: float | None = None,
    ) -> Record:
        """Build a Record from one shipper map.

        `ts` is a timestamp carried outside the map (forward EventTime, msgpack
        entry header); a timestamp inside the map wins only when there is none.
        Raises ValueError when the map has no message at all, RecordTooLarge (a
        ValueError) when it is over the size or nesting bound.
        """
        if not isinstance(doc, dict):
            doc = dict(doc)
        try:
            # One C call bounds the common case: the encoded size, and a nesting depth
            # no larger than the number of brackets (strings included).
            encoded = orjson.dumps(doc)
        except TypeError:  # a binary/numeric key, bytes, too deep for orjson, …
            size = _measure(doc, 0, self.max_depth)
            if size >= _DIRTY:
                doc = json_safe(doc)
                size %= _DIRTY
        else:
            size = len(encoded)
            if encoded.count(b"{") + encoded.count(b"[") >= self.max_depth:
                _measure(doc, 0, self.max_depth)
        if size > self.max_bytes:
            raise RecordTooLarge(f"record of ~{size} bytes is over the {self.max_bytes}-byte limit")
        present = self._heads.intersection(doc)
        plan = self._plans.get(present)
        if plan is None:
            plan = self._plan(present)
        message_keys, time_keys, service_paths, level_paths = plan
        message: Any = None
        message_key = None
        for key in message_keys:
            value = doc[key]
            if value is None:
                continue
            if value.__class__ is dict:
                # ECS `log` is an object ({"level":…, "file":…}): text elsewhere wins.
                if message_key is None:
                    message, message_key = value, key
                continue
            message, message_key = value, key
            break
        if message_key is None:
            raise ValueError(f"no message field (expected one of {', '.join(MESSAGE_KEYS)})")

        if ts is None:
            for key in time_keys:
                raw_ts = doc[key]
                ts = (
                    raw_ts
                    if raw_ts.__class__ is float and 0 < raw_ts < 1e11
                    else parse_time(raw_ts)
                )
                if ts is not None:
                    break
        if ts is None:
            ts = now if now is not None else time.time()

        service = None
        for path, parts in service_paths:
            service = doc[path] if parts is None else _lookup_compiled(doc, path, parts)
            if names_a_service(service):
                break
            service = None
        if service is None:
            service = tag or UNKNOWN_SERVICE

        text = message if message.__class__ is str else message_text(message)
        level = None
        for path, parts in level_paths:
            raw_level = doc[path] if parts is None else _lookup_compiled(doc, path, parts)
            if raw_level is not None:
                level = canonical_level(raw_level)
                if level is not None:
                    break
        if level is None:
            level = infer_level(text)

        attributes = doc.copy()
        del attributes[message_key]
        if tag is not None:
            attributes.setdefault("tag", tag)
        return Record(
            ts=ts,
            message=text,
            service=service,
            level=level,
            attributes=attributes,
            source=self.source,
            size=size,
        )

    def build(
        self,
        message: str,
        attributes: dict[str, Any],
        *,
        ts: float | None = None,
        level: str | None = None,
        service: str | None = None,
        now: float | None = None,
    ) -> Record:
        """A Record from a structured source (OTLP, `logguardian.v1`) whose message,
        time, level or service arrive as fields of their own: those win; the rest
        comes from `attributes` by the same rules as a shipper map."""
        if ts is None:
            ts = now if now is not None else time.time()
        name = service if names_a_service(service) else None
        if name is None:
            name = UNKNOWN_SERVICE
            for path, parts in self._service_paths:
                value = _lookup_compiled(attributes, path, parts)
                if names_a_service(value):
                    name = value
                    break
        found = canonical_level(level) if level else None
        if found is None and attributes:
            for path, parts in self._level_paths:
                found = canonical_level(_lookup_compiled(attributes, path, parts))
                if found is not None:
                    break
        if found is None:
            found = infer_level(message)
        return Record(
            ts=ts,
            message=message,
            service=name,
            level=found,
            attributes=attributes,
            source=self.source,
        )


_normalizers: dict[tuple[str, tuple[str, ...]], Normalizer] = {}


def normalize(
    doc: Mapping[str, Any],
    *,
    source: str,
    ts: float | None = None,
    tag: str | None = None,
    service_fields: Sequence[str] = DEFAULT_SERVICE_FIELDS,
    now: float | None = None,
) -> Record:
    """One-off form of `Normalizer` (see there); hot paths should hold a Normalizer."""
    key = (source, tuple(service_fields))
    normalizer = _normalizers.get(key)
    if normalizer is None:
        if len(_normalizers) > 64:
            _normalizers.clear()
        normalizer = _normalizers[key] = Normalizer(source, key[1])
    return normalizer(doc, ts=ts, tag=tag, now=now)
