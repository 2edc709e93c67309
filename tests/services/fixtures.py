"""Real Elasticsearch, Prometheus and Alertmanager for integration tests.

Every service is a real server on 127.0.0.1 started from what tests/services/install.sh
installs. A service that cannot start FAILS the test (never skips): a green run must
mean the exporters talked to the real thing.

Handles offer blocking calls (`query`, `wait_for`, `alerts`) and `a*` twins that run
them in a thread, for async tests whose sidecar shares the event loop and must keep
answering scrapes and posts while the test waits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ES_SCRIPT = HERE / "elasticsearch.sh"
ES_START_SECONDS = 180.0
SERVICE_START_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


@contextlib.contextmanager
def running(make: Callable[[Path], S], prefix: str) -> Iterator[S]:
    """A service made in a fresh temporary directory and started; stopped and its
    directory removed afterwards, however the test ended."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    service = make(workdir)
    try:
        service.start()
        yield service
    finally:
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)


ROOT = HERE.parents[1]
# Fixtures that start a real service: tests using them are `integration` tests.
SERVICE_FIXTURES = frozenset(
    {
        "elasticsearch",
        "elasticsearch_node",
        "elasticsearch_url",
        "secure_elasticsearch",
        "prometheus_factory",
        "alertmanager_factory",
    }
)


def require_tool(name: str) -> str:
    """Path of an external tool (the project's `.tools/bin` first, then PATH). Missing:
    a failure in CI (`CI` set), where `make test` installs everything; a skip on a
    developer machine that has not run tests/services/install.sh."""
    local = ROOT / ".tools" / "bin" / name
    path = str(local) if local.is_file() else shutil.which(name)
    if path is None:
        message = f"`{name}` is not installed: run tests/services/install.sh (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


_binary = require_tool


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that starts a real service as `integration`, so
    `make test-fast` (`-m "not integration and not external"`) needs none."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Process:
    """A child server in its own process group, so stop() reaches the whole tree."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.name = name
        self.argv = argv
        self.log = log
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                pytest.fail(f"{self.name} exited during startup:\n{_tail(self.log)}")
            try:
                if probe():
                    return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        pytest.fail(f"{self.name} not ready within {timeout:.0f}s:\n{_tail(self.log)}")

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None


# -- Elasticsearch -------------------------------------------------------------------------


class ElasticsearchNode:
    """One real ES 8 node. `stop()`/`start()` keep its data dir and port, so documents
    written before an outage are still there after it; `pause()`/`resume()` freeze the
    JVM (SIGSTOP) to play a node that accepts connections but never answers."""

    def __init__(
        self,
        node_dir: Path,
        port: int | None = None,
        user: tuple[str, str] | None = None,
        settings: dict[str, str] | None = None,
    ):
        self.node_dir = node_dir
        self.port = port or _free_port()
        self.user = user
        scheme = "https" if user else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        # With a user: TLS with the node's own CA, and basic auth (file realm).
        self.ca_cert = node_dir / "config" / "certs" / "ca.crt" if user else None
        env = dict(os.environ)
        if user:
            env["ES_SECURE_USER"] = f"{user[0]}:{user[1]}"
        if settings:
            env["ES_EXTRA_SETTINGS"] = " ".join(f"{k}={v}" for k, v in settings.items())
        self._process = _Process(
            "elasticsearch",
            ["bash", str(ES_SCRIPT), "run", str(node_dir), str(self.port)],
            node_dir / "console.log",
            env=env,
        )

    def _open(self, req: urllib.request.Request, timeout: float) -> Any:
        if self.user:
            token = base64.b64encode(f"{self.user[0]}:{self.user[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
            context = ssl.create_default_context(cafile=str(self.ca_cert))
            return urllib.request.urlopen(req, timeout=timeout, context=context)
        return urllib.request.urlopen(req, timeout=timeout)

    @property
    def running(self) -> bool:
        return self._process.running

    def _healthy(self) -> bool:
        req = urllib.request.Request(
            f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=1s"
        )
        try:
            with self._open(req, 3.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, ssl.SSLError, FileNotFoundError):
            return False

    def start(self) -> None:
        if self._process.running:
            return
        self._process.start()
        self._process.wait_ready(self._healthy, ES_START_SECONDS)

    def stop(self) -> None:
        self._process.stop(timeout=60.0)

    def pause(self) -> None:
        self._process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._process.signal(signal.SIGCONT)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """A raw JSON call, for assertions that should not trust the exporter's client."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with self._open(req, 30.0) as resp:
            return json.loads(resp.read() or b"null")

    def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        """Documents in `index` after a refresh (0 when it does not exist yet)."""
        quoted = urllib.parse.quote(index, safe="")
        try:
            self.request("POST", f"/{quoted}/_refresh")
            body = {"query": query} if query else None
            return int(self.request("POST", f"/{quoted}/_count", body)["count"])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return 0
            raise

    def search(
        self, index: str, query: dict[str, Any] | None = None, size: int = 1000
    ) -> list[dict[str, Any]]:
        quoted = urllib.parse.quote(index, safe="")
        self.request("POST", f"/{quoted}/_refresh")
        body: dict[str, Any] = {"size": size, "query": query or {"match_all": {}}}
        hits = self.request("POST", f"/{quoted}/_search", body)["hits"]["hits"]
        return list(hits)


@pytest.fixture(scope="session")
def elasticsearch_node() -> Iterator[ElasticsearchNode]:
    """A real ES 8 node for the whole session (started once, ~20 s)."""
    _binary("java")
    with running(ElasticsearchNode, "logguardian-es-") as node:
        yield node


@pytest.fixture(scope="session")
def secure_elasticsearch() -> Iterator[ElasticsearchNode]:
    """A second real node set up like a guarded production one: HTTPS (own CA), basic
    auth, and a 1 MB request limit (`http.max_content_length`) for oversize bulks."""
    _binary("java")
    _binary("openssl")

    def make(node_dir: Path) -> ElasticsearchNode:
        return ElasticsearchNode(
            node_dir,
            user=("logguardian", "s3cret-pass"),
            settings={"http.max_content_length": "1mb"},
        )

    with running(make, "logguardian-es-") as node:
        yield node


@pytest.fixture(scope="session")
def elasticsearch_url(elasticsearch_node: ElasticsearchNode) -> str:
    return elasticsearch_node.url


@pytest.fixture
def elasticsearch(elasticsearch_node: ElasticsearchNode) -> Iterator[ElasticsearchNode]:
    """The session node, guaranteed up and unfrozen before and after the test (outage
    tests stop or pause it)."""
    elasticsearch_node.resume()
    elasticsearch_node.start()
    try:
        yield elasticsearch_node
    finally:
        elasticsearch_node.resume()
        elasticsearch_node.start()


# -- Prometheus ----------------------------------------------------------------------------


class PrometheusServer:
    """A real Prometheus scraping `targets` (host:port) every second."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        rule_files: Sequence[Path] = (),
        metrics_path: str = "/metrics",
        scrape_interval: str = "1s",
    ):
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {
                "scrape_interval": scrape_interval,
                "evaluation_interval": "1s",
                "scrape_timeout": scrape_interval,
            },
            "rule_files": [str(Path(p).resolve()) for p in rule_files],
            "scrape_configs": [
                {
                    "job_name": "logguardian",
                    "metrics_path": metrics_path,
                    "static_configs": [{"targets": list(targets)}],
                }
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        (workdir / "data").mkdir(exist_ok=True)
        self._process = _Process(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            workdir / "prometheus.log",
        )

    def start(self) -> None:
        self._process.start()
        self._process.wait_ready(
            lambda: _get(f"{self.url}/-/ready")[0] == 200, SERVICE_START_SECONDS
        )

    def stop(self) -> None:
        self._process.stop()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the `result` list of the vector (raises on a PromQL error)."""
        status, body = _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"PromQL {promql!r} failed: {answer}")
        return list(answer["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        _, body = _get(f"{self.url}/api/v1/targets")
        return list(json.loads(body)["data"]["activeTargets"])

    def wait_for(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until the query returns samples; fail with the scrape state if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no samples for {promql!r} within {timeout}s; targets: {self.targets()}"
                )
            time.sleep(0.5)

    async def aquery(self, promql: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.query, promql)

    async def await_for(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.wait_for, promql, timeout)


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., PrometheusServer]]:
    with contextlib.ExitStack() as stack:

        def make(
            targets: Sequence[str],
            rule_files: Sequence[Path] = (),
            metrics_path: str = "/metrics",
            scrape_interval: str = "1s",
        ) -> PrometheusServer:
            def server(workdir: Path) -> PrometheusServer:
                return PrometheusServer(workdir, targets, rule_files, metrics_path, scrape_interval)

            return stack.enter_context(running(server, "logguardian-prom-"))

        yield make


# -- Alertmanager --------------------------------------------------------------------------

DEFAULT_ALERTMANAGER_CONFIG = """\
route:
  receiver: blackhole
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: blackhole
"""


class AlertmanagerServer:
    """A real Alertmanager (clustering off). Alerts live only in memory, so
    `stop()`/`start()` on the same port is the restart a client must survive."""

    def __init__(self, workdir: Path, config_yaml: str):
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_file = workdir / "alertmanager.yml"
        config_file.write_text(config_yaml)
        (workdir / "data").mkdir(exist_ok=True)
        self._process = _Process(
            "alertmanager",
            [
                _binary("prometheus-alertmanager"),
                f"--config.file={config_file}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            workdir / "alertmanager.log",
        )

    @property
    def running(self) -> bool:
        return self._process.running

    def start(self) -> None:
        if self._process.running:
            return
        self._process.start()
        self._process.wait_ready(
            lambda: _get(f"{self.url}/-/ready")[0] == 200, SERVICE_START_SECONDS
        )

    def stop(self) -> None:
        self._process.stop()

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts; keyword filters become label matchers (service="x")."""
        params = [("filter", f'{k}="{v}"') for k, v in filters.items()]
        query = "?" + urllib.parse.urlencode(params) if params else ""
        status, body = _get(f"{self.url}/api/v2/alerts{query}")
        if status != 200:
            raise AssertionError(f"alertmanager answered {status}: {body[:300]!r}")
        return list(json.loads(body))

    async def aalerts(self, **filters: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.alerts, **filters)


@pytest.fixture
def alertmanager_factory() -> Iterator[Callable[..., AlertmanagerServer]]:
    with contextlib.ExitStack() as stack:

        def make(config_yaml: str | None = None) -> AlertmanagerServer:
            config = config_yaml or DEFAULT_ALERTMANAGER_CONFIG
            return stack.enter_context(
                running(lambda workdir: AlertmanagerServer(workdir, config), "logguardian-am-")
            )

        yield make
