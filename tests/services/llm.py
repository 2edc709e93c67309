"""A real OpenAI-compatible LLM server for the explanation tests, and a recording
proxy to put between the sidecar and it.

`llm_server` runs llama-cpp-python's `python -m llama_cpp.server` with the Gemma 3
270M Q4_K_M GGUF that tests/services/llm.sh installs. Missing in CI = a failure.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from .fixtures import _free_port, _Process

HERE = Path(__file__).resolve().parent
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
MODEL_ALIAS = "gemma-3-270m-q4_k_m"
# Gemma 3's own turn format: without it the server falls back to llama-2's [INST]
# format (the GGUF has no chat template), which this model was never trained on.
CHAT_TEMPLATE = HERE / "gemma3-chat.json"
START_SECONDS = 120.0


def services_dir() -> Path:
    """Where install.sh/llm.sh put things (same rule as those scripts)."""
    if os.environ.get("LOGGUARDIAN_SERVICES_DIR"):
        return Path(os.environ["LOGGUARDIAN_SERVICES_DIR"])
    if os.geteuid() == 0:
        return Path("/opt/logguardian-services")
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "logguardian-services"


def _missing(what: str) -> None:
    message = f"{what}: run tests/services/llm.sh (install.sh and make test do)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def server_argv(python: Path, model: Path, port: int) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server for the local model (tests, bench)."""
    return [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_ALIAS,
        "--chat_format",
        "hf-tokenizer-config",
        "--hf_tokenizer_config_path",
        str(CHAT_TEMPLATE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        # One thread: on a busy 2-core machine two OpenMP threads wait on each other at
        # every barrier (measured 1.0 token/s with 2 threads, 9.5 with 1).
        "--n_threads",
        "1",
    ]


@dataclass
class LLMServer:
    url: str  # OpenAI base URL, ending in /v1
    model: str
    process: _Process | None


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMServer]:
    """The local llama.cpp server; LOGGUARDIAN_TEST_LLM_URL (+ _MODEL) points the
    tests at an OpenAI-compatible server already running instead (e.g. Ollama)."""
    if os.environ.get("LOGGUARDIAN_TEST_LLM_URL"):
        yield LLMServer(
            os.environ["LOGGUARDIAN_TEST_LLM_URL"].rstrip("/"),
            os.environ.get("LOGGUARDIAN_TEST_LLM_MODEL", MODEL_ALIAS),
            None,
        )
        return
    root = services_dir()
    python = root / "llm-venv" / "bin" / "python"
    model = root / "models" / MODEL_FILE
    if not python.is_file():
        _missing(f"llama-cpp-python venv not found at {python.parent.parent}")
    if not model.is_file():
        _missing(f"model not found at {model}")
    port = _free_port()
    log = tmp_path_factory.mktemp("llm") / "llama-server.log"
    process = _Process("llama.cpp server", server_argv(python, model, port), log)
    process.start()
    url = f"http://127.0.0.1:{port}/v1"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/models", timeout=3) as resp:
            return bool(resp.status == 200 and json.loads(resp.read())["data"])

    try:
        process.wait_ready(ready, START_SECONDS)
        yield LLMServer(url, MODEL_ALIAS, process)
    finally:
        process.stop()


@dataclass
class RecordingProxy:
    """Forwards everything to `upstream` and keeps each request body it forwarded."""

    upstream: str  # e.g. http://127.0.0.1:1234 (no path)
    bodies: list[bytes] = field(default_factory=list)
    url: str = ""

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding")
        }
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method,
                self.upstream + request.path_qs,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=300),
            ) as resp,
        ):
            payload = await resp.read()
            return web.Response(
                status=resp.status,
                body=payload,
                content_type=resp.content_type,
            )

    def chat_requests(self) -> list[dict[str, object]]:
        out = []
        for body in self.bodies:
            try:
                doc = json.loads(body)
            except ValueError:
                continue
            if isinstance(doc, dict) and "messages" in doc:
                out.append(doc)
        return out


@pytest.fixture
async def recording_proxy(llm_server: LLMServer) -> AsyncIterator[RecordingProxy]:
    proxy = RecordingProxy(llm_server.url.removesuffix("/v1"))
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", proxy._forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    proxy.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield proxy
    finally:
        await runner.cleanup()
