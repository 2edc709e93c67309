"""SIGTERM on a real `logguardian serve`: receivers stop, every queued record is
processed, the process exits 0 — without waiting out the batch timer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
from conftest import free_port

LOGGUARDIAN = Path(sys.executable).with_name("logguardian")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_sigterm_drains_the_queue(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "LOGGUARDIAN_RECEIVERS__TCP__PORT": "0",
        # One huge batch that waits 60 s to fill: records sit in the queue until the
        # drain, which must not wait the timer out.
        "LOGGUARDIAN_PIPELINE__BATCH_RECORDS": "100000",
        "LOGGUARDIAN_PIPELINE__BATCH_WAIT_SECONDS": "60",
    }
    proc = subprocess.Popen(
        [
            str(LOGGUARDIAN),
            "serve",
            "--http-port",
            str(port),
            "--forward-port",
            "0",
            "--grpc-port",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(base + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "sidecar did not start"
            time.sleep(0.1)

        total = 0
        for b in range(5):
            body = orjson.dumps(
                [{"log": f"job {b}-{i} done", "service": "batch"} for i in range(1000)]
            )
            req = urllib.request.Request(
                base + "/api/v1/logs",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                assert orjson.loads(r.read())["accepted"] == 1000
            total += 1000
        metrics = _get(base + "/metrics")[1]
        assert _metric(metrics, "logguardian_queue_depth") == total  # still queued

        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=45)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert f"draining {total} queued records" in output
    assert f"stopped: {total} records processed" in output, output
    assert took < 40, f"drain took {took:.1f}s (waited out the batch timer?)"


def test_bad_setting_stops_startup_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("receivers:\n  tcp:\n    port: lots\n")
    env = {**os.environ, "LOGGUARDIAN_RECEIVERS__HTTP__PROT": "1"}
    for args, env_, needle in (
        (["--config", str(config)], os.environ, "receivers.tcp.port"),
        ([], env, "unknown setting 'receivers.http.prot'"),
    ):
        done = subprocess.run(
            [str(LOGGUARDIAN), "serve", "--http-port", "0", *args],
            env=env_,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert needle in done.stderr
