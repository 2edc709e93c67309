"""SIGTERM with shippers connected: open Forward connections (one idle, one under
steady traffic) must not hold up the exit (Python >= 3.12.1 waits for every client in
`wait_closed`), nothing is acked that is not processed, and no per-connection
CancelledError traceback is logged (Python 3.11)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from services.serve import ForwardClient, Serve


def test_sigterm_with_connected_forward_clients_exits_promptly(tmp_path: Path) -> None:
    serve = Serve(tmp_path / "state").start()
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
