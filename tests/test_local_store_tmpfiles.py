"""Issue 13: a crash during a snapshot leaves `write_atomic`'s temporary behind
(up to megabytes each, never renamed); the next start removes them."""

from __future__ import annotations

import os
from collections.abc import Callable

from logguardian.config import Settings
from logguardian.server import Sidecar


async def test_stale_snapshot_temporaries_are_removed_at_start(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    state = settings.state_dir
    (state / "miner").mkdir(parents=True)
    stale = [
        state / ".miner.json.4242.139912.tmp",
        state / "miner" / ".templates.json.77.1.tmp",
    ]
    for path in stale:
        path.write_bytes(b"x" * (4 * 1024 * 1024))
    kept = [state / "notes.tmp", state / "miner.json"]  # not a write_atomic temporary
    for path in kept:
        path.write_bytes(b"{}")
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        assert not [p for p in stale if p.exists()]
        assert all(p.exists() for p in kept)
        leftovers = [p.name for p in state.rglob(".*.tmp") if f".{os.getpid()}." not in p.name]
        assert leftovers == []
    finally:
        await sidecar.stop()
