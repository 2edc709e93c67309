"""A real HTTP shipper (syslog-ng's `http()` destination, Debian package) against
the receiver: batched ndjson in, 503 under backpressure, its own retries, and
every line arriving exactly once."""

from __future__ import annotations

import asyncio
import collections
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from logguardian.config import Settings
from logguardian.pipeline import Batch
from logguardian.server import Sidecar

CONFIG = """@version: 3.38
options {{ stats-freq(0); time-reopen(1); }};
source s_in {{ file("{src}" follow-freq(0.1) flags(no-parse)); }};
destination d_http {{
  http(url("http://127.0.0.1:{port}/api/v1/logs") method("POST")
       headers("Content-Type: application/x-ndjson")
       body("$(format-json message=$MSG service=sng-app)")
       batch-lines(100) batch-timeout(200) delimiter("\\n"));
}};
log {{ source(s_in); destination(d_http); }};
"""


class GatedCounter:
    name = "gated-counter"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.seen: collections.Counter[str] = collections.Counter()
        self.services: set[str] = set()

    def process(self, batch: Batch) -> None:
        self.gate.wait(60)
        self.seen.update(r.message for r in batch.records)
        self.services.update(r.service for r in batch.records)


async def test_syslog_ng_http_destination_retries_503_and_loses_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    binary = shutil.which("syslog-ng")
    assert binary, "syslog-ng is not installed: run `make services` (tests/services/install.sh)"
    sidecar = Sidecar(
        make_settings(
            pipeline={"queue_records": 150, "batch_records": 100, "batch_wait_seconds": 0}
        )
    )
    stage = GatedCounter()
    sidecar.pipeline.processors = [stage]
    await sidecar.start()
    lines = [f"order {i} ERROR card declined" for i in range(500)]
    src = tmp_path / "app.log"
    src.write_text("".join(line + "\n" for line in lines))
    conf = tmp_path / "syslog-ng.conf"
    conf.write_text(CONFIG.format(src=src, port=sidecar.http_port))
    proc = subprocess.Popen(
        [
            binary,
            "-F",
            "--no-caps",
            "-f",
            str(conf),
            "-R",
            str(tmp_path / "persist"),
            "-p",
            str(tmp_path / "pid"),
            "-c",
            str(tmp_path / "ctl"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reg = sidecar.metrics.registry
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not reg.get_sample_value(
            "logguardian_rejected_requests_total", {"receiver": "http", "reason": "queue_full"}
        ):
            assert proc.poll() is None, proc.communicate()[0]
            assert loop.time() < deadline, "syslog-ng never hit the full queue"
            await asyncio.sleep(0.05)
        stage.gate.set()
        deadline = loop.time() + 60
        while sum(stage.seen.values()) < len(lines):
            assert proc.poll() is None, proc.communicate()[0]
            assert loop.time() < deadline, f"only {sum(stage.seen.values())} lines arrived"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # a duplicate resend would show up by now
    finally:
        stage.gate.set()
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        await sidecar.stop()
    assert set(stage.seen) == set(lines)
    assert set(stage.seen.values()) == {1}, "a line was processed twice"
    assert stage.services == {"sng-app"}
    assert reg.get_sample_value("logguardian_received_total", {"receiver": "http"}) == 500
