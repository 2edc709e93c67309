"""SIGTERM with shippers connected: open Forward connections (one idle, one under
steady traffic) must not hold up the exit (Python >= 3.12.1 waits for every client in
`wait_closed`), nothing is acked that is not processed, and no per-connection
CancelledError traceback is logged (Python 3.11). Run under the project's 3.11 and
under the newest CPython on the machine (tests/services/newest_python.sh)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from services.serve import LOGGUARDIAN, ForwardClient, Serve

ROOT = Path(__file__).resolve().parents[1]


def newest_python_logguardian() -> Path:
    found = sorted(
        ROOT.glob(".tools/python-3*/bin/logguardian"),
        key=lambda p: int(p.parents[1].name.removeprefix("python-")),
    )
    if not found:
        pytest.fail("no newest-CPython venv: run tests/services/newest_python.sh (make test does)")
    return found[-1]


@pytest.mark.parametrize("python", ["3.11", "newest"])
def test_sigterm_with_connected_forward_clients_exits_promptly(tmp_path: Path, python: str) -> None:
    program = LOGGUARDIAN if python == "3.11" else newest_python_logguardian()
    serve = Serve(tmp_path / "state", program=program).start()
    acked = 0
    stop = threading.Event()

    def steady() -> None:
        nonlocal acked
        client = ForwardClient(serve.forward_port)
        i = 0
        while not stop.is_set():
            entries = [[time.time(), {"log": f"tick {i} {k}"}] for k in range(100)]
            if not client.send("app.steady", entries):
                break
            acked += 100
            i += 1
        client.close()

    try:
        idle = ForwardClient(serve.forward_port)
        assert idle.send("app.idle", [[time.time(), {"log": "hello"}]])
        sender = threading.Thread(target=steady)
        sender.start()
        time.sleep(1.0)
        sent = time.monotonic()
        code = serve.terminate(timeout=30)
        took = time.monotonic() - sent
        stop.set()
        sender.join(10)
        idle.close()
    finally:
        stop.set()
        serve.stop()
    output = serve.output()
    assert code == 0, output
    assert took < 10, f"exit took {took:.1f}s"
    assert "Traceback" not in output and "CancelledError" not in output, output
    match = re.search(r"stopped: (\d+) records processed", output)
    assert match, output
    # Every acked record was processed before exit (the idle client's one included).
    assert int(match.group(1)) >= acked + 1 > 1, (match.group(0), acked)


async def test_listener_close_ends_open_connections_without_cancelling_handlers() -> None:
    """Listener.close returns although a client stays connected: the handler that is
    idle in `read` gets EOF and returns normally (a cancelled handler is what Python
    3.11 logs a traceback for), and a frame half read is not acknowledged."""
    import asyncio

    from logguardian.receivers.listener import listen

    outcomes: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                if data.endswith(b"\n"):
                    writer.write(b"ack\n")
                    await writer.drain()
            outcomes.append("eof")
        except asyncio.CancelledError:
            outcomes.append("cancelled")
            raise
        finally:
            writer.close()

    listener = await listen(handler, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    idle = await asyncio.open_connection("127.0.0.1", port)
    busy = await asyncio.open_connection("127.0.0.1", port)
    idle[1].write(b"frame\n")
    assert await idle[0].readline() == b"ack\n"
    busy[1].write(b"half a fra")  # no newline: never complete, never acked
    await busy[1].drain()
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await asyncio.wait_for(listener.close(), 10)
    assert time.monotonic() - started < 2
    assert outcomes == ["eof", "eof"]
    assert await busy[0].read() == b""  # closed by the server, nothing acked
    for _, writer in (idle, busy):
        writer.close()
