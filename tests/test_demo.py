"""`logguardian demo` as `make demo` runs it: a real sidecar, the shipped sample through
the real HTTP receiver, every injected incident found, exit 0, well under a minute."""

from __future__ import annotations

import subprocess
import sys
import time


def test_demo_finds_every_injected_incident() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "logguardian.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "through POST /api/v1/logs" in out
    assert "4/4 injected incidents detected" in out
    for kind, service in (
        ("error burst", "payments"),
        ("new fatal template", "inventory"),
        ("rate spike", "checkout"),
        ("service silent", "auth"),
    ):
        line = next(x for x in out.splitlines() if x.strip().startswith(kind))
        assert service in line and "detected after" in line, line
    assert "why: error ratio in payments" in out
    assert "first seen in inventory" in out
    assert "Anomalous records per service:" in out
    # Issue 14: two releases' tracebacks (lines moved), shipped line by line, form one
    # exception group that links to the failing line of the newest release.
    (group,) = [x for x in out.splitlines() if "ValueError at shop/cart.py:apply_coupon" in x]
    assert "x2" in group and "versions 1.4.2, 1.4.3" in group and "caused by KeyError" in group
    assert "code:    https://git.example.com/checkout/blob/1.4.3/shop/cart.py#L14" in out
    assert "finding: new exception `ValueError` at `shop/cart.py:apply_coupon`" in out
    assert elapsed < 60
