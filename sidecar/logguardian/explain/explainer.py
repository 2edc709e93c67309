"""Runs LLM explanations on the event loop, never on the pipeline worker.

The worker hands over (incident, masked context) with `submit()`, which only
schedules; at most `concurrency` calls run at once, a bounded number wait, and the
rest are dropped (counted) — the incident keeps its rules explanation. Results are
cached per incident signature and limited by the hourly/daily budget.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any

from ..config import ExplainSettings
from ..metrics import Metrics
from ..signals import Incident
from .budget import Budget, Cache
from .context import Context
from .grounding import problems, reason
from .schema import explanation

if TYPE_CHECKING:
    # The openai client (and its HTTP stack) loads only when an LLM is configured.
    from .client import LLMClient

log = logging.getLogger(__name__)

MAX_PENDING = 100
# Metric label values of logguardian_explain_calls_total (a fixed set).
OUTCOMES = (
    "accepted",
    "rejected",
    "invalid",
    "timeout",
    "rate_limited",
    "unavailable",
    "error",
    "budget",
    "dropped",
)


class Explainer:
    def __init__(self, settings: ExplainSettings, metrics: Metrics, client: LLMClient | None):
        self.settings = settings
        self.metrics = metrics
        self.client = client
        self.budget = Budget(settings.max_calls_per_hour, settings.max_tokens_per_day)
        self.cache = Cache(settings.cache_ttl_seconds)
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.cache_hits = 0
        self.last_rejection: list[str] = []
        # Rejected answers by reason (an answer counts once per reason it has), and the
        # last few rejected answers with their problems: what a prompt fix is judged by.
        self.rejections: collections.Counter[str] = collections.Counter()
        self.rejected: collections.deque[tuple[dict[str, Any], list[str]]] = collections.deque(
            maxlen=20
        )
        self.latencies: collections.deque[float] = collections.deque(maxlen=1000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._budget_gauges()

    @property
    def enabled(self) -> bool:
        return self.client is not None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.settings.concurrency)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._loop = None
        if self.client is not None:
            await self.client.close()

    def submit(self, incident: Incident, context: Context) -> None:
        """Thread-safe and non-blocking: the pipeline worker calls this."""
        loop = self._loop
        if loop is None or not self.enabled:
            return
        loop.call_soon_threadsafe(self._spawn, incident, context)

    def _spawn(self, incident: Incident, context: Context) -> None:
        if len(self._tasks) >= MAX_PENDING:
            self._count("dropped")
            return
        task = asyncio.ensure_future(self.explain(incident, context))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until every submitted explanation has finished (tests, bench, demo)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await asyncio.sleep(0)

    async def explain(
        self, incident: Incident, context: Context, force: bool = False
    ) -> dict[str, Any] | None:
        """The LLM explanation (also set on the incident), or None when the rules one
        stands. `force` skips the cache (on-demand re-run), never the budget."""
        if self.client is None:
            return None
        key = context.signature()
        if not force:
            hit, cached = self.cache.get(key)
            if hit:
                self.cache_hits += 1
                self.metrics.explain_cache_hits.inc()
                if cached is not None:
                    incident.explanation = dict(cached)
                return cached
        assert self._slots is not None, "Explainer.start() was not called"
        async with self._slots:
            if not self.budget.allow():
                self._count("budget")
                return None
            self.budget.spend_call()
            from .client import CallFailed  # loaded with the client itself

            started = time.perf_counter()
            try:
                reply = await self.client.ask(context)
            except CallFailed as exc:
                log.warning("incident %s: LLM explanation failed: %s", incident.id, exc)
                self._count(exc.outcome)
                return None
            except Exception:
                log.exception("incident %s: LLM explanation failed", incident.id)
                self._count("error")
                return None
            finally:
                self.latencies.append(time.perf_counter() - started)
                self.metrics.explain_seconds.observe(self.latencies[-1])
                self._budget_gauges()
            self.budget.spend_tokens(reply.prompt_tokens + reply.completion_tokens)
            self.metrics.explain_tokens.labels("prompt").inc(reply.prompt_tokens)
            self.metrics.explain_tokens.labels("completion").inc(reply.completion_tokens)
            self._budget_gauges()
        if reply.answer is None:
            log.info("incident %s: LLM answer invalid: %s", incident.id, reply.error)
            self._count("invalid")
            self.cache.put(key, None)
            return None
        found = problems(reply.answer, context)
        if found:
            log.info("incident %s: LLM answer not grounded: %s", incident.id, "; ".join(found))
            self.last_rejection = found
            self.rejections.update({reason(p) for p in found})
            self.rejected.append((reply.answer.model_dump(), found))
            self._count("rejected")
            self.cache.put(key, None)
            return None
        result = explanation(reply.answer, "llm", self.client.model, time.time())
        self._count("accepted")
        self.cache.put(key, result)
        incident.explanation = dict(result)
        return result

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.metrics.explain_calls.labels(outcome).inc()

    def _budget_gauges(self) -> None:
        self.metrics.explain_budget_left.labels("calls_hour").set(self.budget.calls_left())
        self.metrics.explain_budget_left.labels("tokens_day").set(self.budget.tokens_left())
