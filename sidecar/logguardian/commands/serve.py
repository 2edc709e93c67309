"""`logguardian serve`: run the sidecar until SIGTERM, then drain and exit."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from ..config import listener_names, load_settings


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """`serve` flags as nested settings overrides (flags beat env beat file)."""
    receivers: dict[str, Any] = {}
    for name in listener_names():
        value = getattr(args, f"{name}_port", None)
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
    from ..server import Sidecar

    asyncio.run(Sidecar(settings).run_forever())
    return 0
