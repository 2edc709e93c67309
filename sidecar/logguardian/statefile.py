"""Atomic state files: every snapshot in `state_dir` is written through here."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# `write_atomic`'s temporary names: `.<file>.<pid>.<thread>.tmp`.
_TMP_NAME = re.compile(r"^\..+\.(\d+)\.\d+\.tmp$")


def write_atomic(path: Path, data: bytes) -> None:
    """tmp + fsync + rename + directory fsync: a crash or power cut leaves the old
    file or the new one, never half of one. The tmp name is unique per process and
    thread so concurrent writers of one file cannot clobber each other's tmp."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_tmp(state_dir: Path) -> int:
    """Delete the temporaries a crash mid-snapshot left behind (they are never
    renamed into place, and can be megabytes each). Run at start, before anything
    writes; returns how many were removed."""
    removed = 0
    if not state_dir.is_dir():
        return 0
    for path in state_dir.rglob(".*.tmp"):
        match = _TMP_NAME.match(path.name)
        if match is None or int(match.group(1)) == os.getpid() or not path.is_file():
            continue
        try:
            path.unlink()
            removed += 1
        except OSError as exc:
            log.warning("cannot remove stale state file %s: %s", path, exc)
    if removed:
        log.info("removed %d stale temporary state file(s) from %s", removed, state_dir)
    return removed
