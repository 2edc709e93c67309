"""REST API (DESIGN §4): templates, feedback, anomalies, incidents, synchronous score."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .server import Sidecar


def add_routes(app: web.Application, sidecar: Sidecar) -> None:
    pass
