"""What the API handlers get from the running sidecar, and the small helpers every
handler shares (JSON answers, bodies, limits, the pipeline lock)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiohttp import web

from ..auth import HttpAuth
from ..components import Registry, Scorer
from ..receivers.decode import DecodeError, TooLarge, inflate_gzip
from ..record import parse_time

T = TypeVar("T")


@dataclass(frozen=True)
class ApiContext:
    parts: Registry
    # The pipeline lock: detector and miner state is only read or changed under it.
    lock: threading.Lock
    auth: HttpAuth
    max_decoded_bytes: int
    service_fields: Sequence[str]
    score: Scorer


API_KEY: web.AppKey[ApiContext] = web.AppKey("logguardian-api", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[API_KEY]


def error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps({"error": message}), content_type="application/json"
    )


def ok(payload: Any) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def bad_request(message: str) -> web.HTTPBadRequest:
    text = orjson.dumps({"error": message}).decode()
    return web.HTTPBadRequest(text=text, content_type="application/json")


def authorized(request: web.Request) -> bool:
    """Write endpoints take the same credentials as ingest."""
    return context(request).auth.check(request.headers.get("Authorization", ""))


async def json_body(request: web.Request) -> Any:
    """The request's JSON, or the error response to send. The app leaves bodies
    compressed (the ingest receiver inflates with a bomb guard), so gzip from
    Logstash's `http_compression` is inflated here under the same limit."""
    raw = await request.read()
    if request.headers.get("Content-Encoding", "").strip().lower() in ("gzip", "x-gzip"):
        try:
            raw = inflate_gzip(raw, context(request).max_decoded_bytes)
        except TooLarge as exc:
            return error(413, str(exc))
        except DecodeError as exc:
            return error(400, str(exc))
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return error(400, f"body is not JSON: {exc}")


async def locked(request: web.Request, fn: Callable[[], T]) -> T:
    """Runs `fn` in a thread under the pipeline lock, so the loop never waits on a batch."""
    lock = context(request).lock

    def run() -> T:
        with lock:
            return fn()

    return await asyncio.to_thread(run)


def service_since(request: web.Request) -> tuple[str | None, float | None]:
    """`?service=&since=` of the read endpoints; `since` is epoch seconds or ISO-8601."""
    query = request.query
    since = None
    if query.get("since"):
        since = parse_time(query["since"])
        if since is None:
            raise bad_request(f"since: not a timestamp: {query['since']!r}")
    return query.get("service") or None, since


def limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit", str(default))
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"limit: not an integer: {raw!r}") from None
    if not 1 <= value <= most:
        raise bad_request(f"limit: must be between 1 and {most}")
    return value
