"""A small Prometheus HTTP API client: instant and range queries, errors kept apart.

`PromQLError` is Prometheus refusing the query (its own `error` text, e.g. a parse
error): the target is wrong and retrying will not help. `PrometheusUnavailable` is
everything else (refused connection, timeout, 5xx): retry with backoff.
"""

from __future__ import annotations

from typing import Any

import aiohttp


class PromQLError(Exception):
    """Prometheus answered, and refused the query; the message is Prometheus' own."""


class PrometheusUnavailable(Exception):
    """Prometheus could not be asked (down, slow, or failing)."""


Series = tuple[dict[str, str], list[tuple[float, float]]]


class PrometheusClient:
    def __init__(self, url: str, timeout: float):
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.get(self.url + path, params=params) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                if isinstance(body, dict) and body.get("status") == "error":
                    message = f"{body.get('errorType', 'error')}: {body.get('error', '')}"
                    if resp.status in (400, 422):
                        raise PromQLError(message)
                    raise PrometheusUnavailable(f"HTTP {resp.status}: {message}")
                if resp.status != 200 or not isinstance(body, dict):
                    raise PrometheusUnavailable(f"HTTP {resp.status} from {path}")
                return body.get("data", {})
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PrometheusUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def query(self, promql: str, at: float | None = None) -> Any:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return await self._get("/api/v1/query", params)

    async def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        data = await self._get(
            "/api/v1/query_range",
            {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        out: list[Series] = []
        if data.get("resultType") == "scalar":
            ts, value = data["result"]
            return [({}, [(float(ts), _number(value))])]
        for item in data.get("result", []):
            metric = {str(k): str(v) for k, v in item.get("metric", {}).items()}
            values = [(float(ts), _number(v)) for ts, v in item.get("values", [])]
            out.append((metric, values))
        return out


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")
