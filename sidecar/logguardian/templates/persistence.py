"""Atomic template snapshots: write a temp file, fsync, rename over the old one.

A crash mid-write leaves the previous snapshot intact; a restart restores ids,
counts and merges so known templates do not look new.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..statefile import write_atomic

if TYPE_CHECKING:
    from .miner import TemplateMiner

log = logging.getLogger(__name__)
SNAPSHOT_NAME = "templates.json"


def snapshot_path(path: Any) -> Path:
    """A directory means `<dir>/templates.json`; anything else is the file itself."""
    p = Path(path)
    return p / SNAPSHOT_NAME if p.is_dir() or not p.suffix else p


def save_snapshot(miner: TemplateMiner, path: Any) -> Path:
    target = snapshot_path(path)
    write_atomic(target, miner.export_bytes())
    return target


def load_snapshot(
    miner: TemplateMiner, path: Any, on_state: Callable[[dict[str, Any]], None] | None = None
) -> bool:
    """Restore from a snapshot; False when there is none. A corrupt snapshot is
    logged and moved aside (kept for inspection, not overwritten by the next save);
    the miner starts empty rather than blocking startup. `on_state` sees the parsed
    snapshot (for keys other than the miner's, e.g. its WAL position)."""
    target = snapshot_path(path)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return False
    try:
        state = orjson.loads(raw)
        miner.import_state(state)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        aside = target.with_name(f"{target.name}.corrupt-{int(time.time())}")
        log.error(
            "ignoring unreadable template snapshot %s (%s); moved to %s", target, exc, aside.name
        )
        try:
            os.replace(target, aside)
        except OSError:
            log.exception("could not move %s aside", target)
        return False
    if on_state is not None:
        on_state(state)
    return True
