"""RSS comes back down after a flood (issue 13 #8/#9): a real `logguardian serve` runs
under the system allocator and hands freed pages back once the flood's sessions have
closed. Under CPython's own allocator the same server stays at its peak: the few
objects that outlive the flood pin every arena (see logguardian.memory)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import psutil
import requests
from logguardian.memory import Trimmer
from services.serve import Serve

RECORDS = 300_000
BODY = 5_000


def _flood(serve: Serve, proc: psutil.Process) -> float:
    """Session-key records in HTTP bodies (each retried on 503); the peak RSS seen."""
    peak = 0.0
    with requests.Session() as http:
        for start in range(0, RECORDS, BODY):  # bounded: 60 bodies, 100 tries each
            docs = [
                {"log": f"user login ok id={i}", "session": f"s{i}", "service": "auth"}
                for i in range(start, start + BODY)
            ]
            body = orjson.dumps(docs)
            for _ in range(100):
                r = http.post(serve.base + "/api/v1/logs", data=body, timeout=60)
                peak = max(peak, proc.memory_info().rss / 1e6)
                if r.status_code != 503:
                    break
                time.sleep(0.2)
            assert r.status_code == 200, r.text
    return peak


def test_rss_comes_back_down_after_a_session_key_flood(tmp_path: Path) -> None:
    env = {
        "LOGGUARDIAN_MODEL__SESSION_KEY": "field:session",
        "LOGGUARDIAN_MODEL__SESSION_IDLE_SECONDS": "2",
        "LOGGUARDIAN_LOG_LEVEL": "warning",
    }
    serve = Serve(tmp_path / "state", env=env).start()
    try:
        assert serve.proc is not None
        proc = psutil.Process(serve.proc.pid)
        environ = proc.environ()
        assert environ.get("PYTHONMALLOC") == "malloc"  # re-executed, same pid
        assert environ.get("MALLOC_ARENA_MAX") == "2"
        base = proc.memory_info().rss / 1e6
        peak = _flood(serve, proc)
        deadline = time.monotonic() + 120
        while serve.metric("logguardian_records_total") < RECORDS:
            assert time.monotonic() < deadline, serve.output()
            peak = max(peak, proc.memory_info().rss / 1e6)
            time.sleep(0.5)
        assert peak - base > 100, (base, peak)  # the flood did cost memory
        # Sessions close 2 s after the last record; the next trim (every 30 s) returns
        # the pages they and the flood's records held.
        goal = base + 0.6 * (peak - base)
        rss = peak
        while time.monotonic() < deadline + 60 and rss > goal:
            time.sleep(1.0)
            rss = proc.memory_info().rss / 1e6
        assert rss <= goal, f"RSS {rss:.0f} MB after the flood: base {base:.0f}, peak {peak:.0f}"
    finally:
        serve.stop()


def test_an_explicit_allocator_choice_is_kept(tmp_path: Path) -> None:
    serve = Serve(tmp_path / "state", env={"PYTHONMALLOC": "pymalloc"}).start()
    try:
        assert serve.proc is not None
        assert psutil.Process(serve.proc.pid).environ()["PYTHONMALLOC"] == "pymalloc"
    finally:
        serve.stop()


def test_trims_at_most_every_trim_seconds() -> None:
    now = [100.0]
    trimmer = Trimmer(clock=lambda: now[0])
    pads: list[int] = []
    trimmer._trim = lambda pad: pads.append(pad) or 1  # count, do not walk the heap
    ticks = []
    for t in (100.0, 129.9, 130.0, 131.0, 159.9, 160.0):
        now[0] = t
        ticks.append(trimmer.maybe())
    assert ticks == [False, False, True, False, False, True]
    assert pads == [0, 0]
