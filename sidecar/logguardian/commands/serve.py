"""`logguardian serve`: run the sidecar until SIGTERM, then drain and exit."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from ..config import load_settings
from ..server import Sidecar


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """`serve` flags as nested settings overrides (flags beat env beat file)."""
    receivers: dict[str, Any] = {}
    for flag, name in (("http_port", "http"), ("forward_port", "forward"), ("grpc_port", "grpc")):
        value = getattr(args, flag, None)
        if value is not None:
            receivers[name] = {"port": value}
    overrides: dict[str, Any] = {}
    if receivers:
        overrides["receivers"] = receivers
    if getattr(args, "state_dir", None) is not None:
        overrides["state_dir"] = args.state_dir
    return overrides


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, **flag_overrides(args))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(Sidecar(settings).run_forever())
    return 0
