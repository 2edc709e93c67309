"""A real Fluent Bit (built by tests/services/fluentbit.sh) tails a file and ships it to a
real `logguardian serve` through the SHIPPED fluentbit/ configs (paths, ports and the
storage dir pointed at a temp dir; nothing else changed). Every record must arrive
exactly once, named after its log file (not the tail tag), also when the sidecar
starts late or is restarted with SIGTERM mid-replay."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from services.serve import Serve

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "fluentbit"
TOKEN = "fluentbit-test-token"
CONFIGS = ["http.conf", "http.yaml", "forward.conf", "forward.yaml"]

pytestmark = pytest.mark.external  # a Fluent Bit built by tests/services/fluentbit.sh


@pytest.fixture(scope="session")
def fluent_bit() -> str:
    """The cached binary (the script builds it only when it is not cached yet)."""
    done = subprocess.run(
        ["bash", str(ROOT / "tests" / "services" / "fluentbit.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    path = done.stdout.strip().splitlines()[-1]
    assert os.access(path, os.X_OK), path
    return path


class FluentBit:
    """One shipped config, rewritten only where it names this machine's paths/ports."""

    def __init__(self, binary: str, config: str, tmp: Path, serve: Serve):
        self.binary = binary
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.file = self.logs / "checkout.log"
        self.file.touch()
        storage = tmp / "flb-storage"
        conf_dir = tmp / "fb"
        conf_dir.mkdir()
        text = (SHIPPED / f"fluent-bit.{config}").read_text()
        port = serve.forward_port if config.startswith("forward") else serve.http_port
        replaced = {
            "/var/log/app/*.log": str(self.logs / "*.log"),
            "/var/fluent-bit/state/flb-storage/": f"{storage}/",
        }
        for old, new in replaced.items():
            assert old in text, f"{config}: expected {old!r} in the shipped config"
            text = text.replace(old, new)
        text, n = re.subn(r"(?im)^(\s*port:?\s+)(9880|24224)\s*$", rf"\g<1>{port}", text)
        assert n == 1, f"{config}: expected one sidecar port"
        self.config = conf_dir / f"fluent-bit.{config}"
        self.config.write_text(text)
        (conf_dir / "parsers.conf").write_text((SHIPPED / "parsers.conf").read_text())
        self.log = tmp / "fluent-bit.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, token: str = TOKEN) -> FluentBit:
        env = {**os.environ, "LOGGUARDIAN_HOST": "127.0.0.1", "LOGGUARDIAN_TOKEN": token}
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        # Read_From_Head is off: only lines appended once the file is watched count.
        deadline = time.monotonic() + 30
        while "checkout.log" not in self.output() or "inotify_fs_add" not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def append(self, start: int, n: int) -> None:
        shapes = (
            "INFO order {} placed by user {}",
            "WARN payment {} retried after {} ms",
            "ERROR inventory {} out of stock at shelf {}",
        )
        lines = [shapes[i % 3].format(i, i % 97) for i in range(start, start + n)]
        with open(self.file, "a") as f:
            f.write("\n".join(lines) + "\n")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


Runner = Callable[[str], tuple[Serve, FluentBit]]


@pytest.fixture
def run(fluent_bit: str, tmp_path: Path) -> Iterator[Runner]:
    """A sidecar (not started yet) and Fluent Bit with `config` (not started yet)."""
    made: list[tuple[Serve, FluentBit]] = []

    def make(config: str) -> tuple[Serve, FluentBit]:
        # The one token: the http configs send it as a header, the forward configs as
        # their shared key (HELO/PING/PONG on every connection).
        serve = Serve(tmp_path / "state", {"LOGGUARDIAN_AUTH__TOKEN": TOKEN})
        shipper = FluentBit(fluent_bit, config, tmp_path, serve)
        made.append((serve, shipper))
        return serve, shipper

    yield make
    for serve, shipper in made:
        shipper.stop()
        serve.stop()


def _delivered(serve: Serve, total: int, shipper: FluentBit, timeout: float = 90.0) -> None:
    counted = serve.settle(total, timeout=timeout, still=3.0)
    assert counted == total, (counted, total, shipper.output()[-3000:], serve.output())
    templates = serve.templates()
    # Named after the log file, not the tail tag (app.<path>).
    assert {s for t in templates for s in t["services"]} == {"checkout"}, templates[:3]


@pytest.mark.parametrize("config", CONFIGS)
def test_every_record_arrives_once_named_after_its_file(run: Runner, config: str) -> None:
    serve, shipper = run(config)
    serve.start()
    shipper.start()
    total = 20_000
    for start in range(0, total, 5_000):
        shipper.append(start, 5_000)
        time.sleep(0.2)
    _delivered(serve, total, shipper)
    assert serve.metric("logguardian_received_total") == total
    if config.startswith("http"):
        # The start-up sized queue: a burst this size never meets a 503.
        assert serve.metric("logguardian_rejected_total") == 0


@pytest.mark.parametrize("config", ["http.yaml", "forward.conf"])
def test_a_sidecar_that_starts_late_still_gets_everything_once(run: Runner, config: str) -> None:
    serve, shipper = run(config)
    shipper.start()
    total = 10_000
    shipper.append(0, total)
    time.sleep(4)  # Fluent Bit flushes into a closed port and schedules retries
    serve.start()
    _delivered(serve, total, shipper, timeout=120)


@pytest.mark.parametrize("config", ["http.conf", "forward.yaml"])
def test_sigterm_mid_replay_loses_and_doubles_nothing(run: Runner, config: str) -> None:
    serve, shipper = run(config)
    serve.start()
    shipper.start()
    total = 30_000
    for start in range(0, total, 3_000):
        shipper.append(start, 3_000)
        time.sleep(0.1)
        if start == 12_000:
            assert serve.terminate(timeout=30) == 0, serve.output()
            serve.start()
    _delivered(serve, total, shipper, timeout=120)


def test_a_start_up_burst_meets_no_503_with_the_default_queue(run: Runner) -> None:
    """~200k records at once (what Fluent Bit flushes when it starts with a backlog):
    every 503 would cost >= 5 s of Fluent Bit backoff, so the default queue takes it."""
    serve, shipper = run("http.yaml")
    serve.start()
    shipper.start()
    total = 200_000
    shipper.append(0, total)
    _delivered(serve, total, shipper, timeout=240)
    assert serve.metric("logguardian_rejected_total") == 0


@pytest.mark.parametrize("config", ["forward.conf"])
def test_a_fluent_bit_with_the_wrong_shared_key_gets_nothing_in(run: Runner, config: str) -> None:
    """The shipped Shared_Key is the sidecar's token: a shipper holding another key
    is refused at the handshake, so none of its records count."""
    serve, shipper = run(config)
    serve.start()
    shipper.start(token="not-the-sidecar-token")
    shipper.append(0, 500)
    deadline = time.monotonic() + 30
    refused = 'reason="unauthorized",receiver="forward"'  # exposition order
    while serve.metric("logguardian_rejected_requests_total", refused) < 1:
        assert time.monotonic() < deadline, (shipper.output()[-3000:], serve.output())
        time.sleep(0.2)
    time.sleep(3)  # and nothing slips in afterwards
    assert serve.metric("logguardian_received_total") == 0
    assert serve.template_total() == 0
