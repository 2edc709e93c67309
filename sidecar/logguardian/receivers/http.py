"""HTTP ingest receiver: `POST /api/v1/logs` (placeholder until the receiver lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..server import Sidecar


def add_routes(app: web.Application, sidecar: Sidecar) -> None:
    pass
