"""Seeded multi-service log traffic with injected incidents and their ground truth.

Normal traffic follows a diurnal curve (quiet at night, busy in the afternoon) with
Poisson arrivals, a few rare-but-normal templates and a background of routine
errors, so detectors face what production logs look like. Injected incidents are
the four an on-call engineer cares about: an error burst, a new fatal template, a
rate spike and a service going silent. Used by `logguardian demo` (shipped sample)
and `bench/scenarios.py`.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

DAY = 86400.0
KINDS = ("error_burst", "new_fatal", "rate_spike", "silence")


@dataclass(frozen=True)
class TemplateSpec:
    text: str  # a log line; {n} {ms} {id} {ip} {user} {sku} are filled per record
    level: str
    weight: float  # share of the service's traffic


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    rate: float  # records per second at the daily mean
    templates: tuple[TemplateSpec, ...]
    # Injected-incident material for this service (the error burst repeats the
    # service's routine error template, so only its rate gives it away).
    fatal: str
    spike_template: int  # index into templates


@dataclass
class Injection:
    kind: str
    service: str
    start: float
    end: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Traffic:
    """Columns of the generated stream, sorted by time."""

    ts: np.ndarray
    service: np.ndarray  # index into services
    template: np.ndarray  # index into texts
    services: list[str]
    texts: list[str]
    levels: list[str]
    injections: list[Injection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def template_ids(self) -> list[str]:
        """Ground-truth template ids (for benches that skip mining)."""
        return [f"T{i}" for i in self.template.tolist()]


def _t(text: str, level: str, weight: float) -> TemplateSpec:
    return TemplateSpec(f"{level.upper():5} {text}", level, weight)


SHOP: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "checkout",
        2.0,
        (
            _t(
                "[http-nio-8080-exec-{n}] CartController - GET /api/cart/{id} 200 {ms}ms",
                "info",
                0.40,
            ),
            _t(
                "[http-nio-8080-exec-{n}] CartController - POST /api/cart/{id}/items 201 {ms}ms",
                "info",
                0.20,
            ),
            _t(
                "[http-nio-8080-exec-{n}] CheckoutService - order {id} placed by user {user} "
                "total={ms}.99 EUR",
                "info",
                0.15,
            ),
            _t(
                "[http-nio-8080-exec-{n}] PricingClient - price lookup for sku {sku} took {ms}ms",
                "debug",
                0.20,
            ),
            _t(
                "[http-nio-8080-exec-{n}] PricingClient - slow response from pricing after {ms}ms",
                "warn",
                0.045,
            ),
            _t(
                "[http-nio-8080-exec-{n}] CheckoutService - order {id} failed: payment declined",
                "error",
                0.005,
            ),
            _t("[scheduler-1] CacheManager - evicted {n} expired cart entries", "info", 0.0002),
        ),
        "[main] Application - Unrecoverable error: database pool exhausted, shutting down "
        "worker {n}",
        0,
    ),
    ServiceSpec(
        "payments",
        1.0,
        (
            _t(
                "[worker-{n}] PaymentProcessor - charge {id} authorized amount={ms}.00 EUR",
                "info",
                0.45,
            ),
            _t("[worker-{n}] PaymentProcessor - charge {id} captured", "info", 0.35),
            _t("[worker-{n}] FraudCheck - score {n} for user {user}", "debug", 0.15),
            _t("[worker-{n}] GatewayClient - retrying charge {id} after {ms}ms", "warn", 0.04),
            _t("[worker-{n}] GatewayClient - charge {id} declined by issuer", "error", 0.01),
            _t("[rotation] KeyManager - rotated signing key {id}", "info", 0.0001),
        ),
        "[worker-{n}] Ledger - ledger checksum mismatch for batch {id}, halting",
        1,
    ),
    ServiceSpec(
        "inventory",
        1.5,
        (
            _t("[grpc-{n}] StockService - reserve sku {sku} qty {n} ok", "info", 0.45),
            _t("[grpc-{n}] StockService - release reservation {id}", "info", 0.25),
            _t("[grpc-{n}] StockService - stock level sku {sku} = {n}", "debug", 0.25),
            _t("[grpc-{n}] StockService - reservation {id} expired", "warn", 0.045),
            _t("[grpc-{n}] StockService - sku {sku} not found", "error", 0.005),
        ),
        "[main] JVM - java.lang.OutOfMemoryError: Java heap space in thread grpc-{n}",
        0,
    ),
    ServiceSpec(
        "auth",
        1.5,
        (
            _t("[http-{n}] LoginHandler - user {user} logged in from {ip}", "info", 0.35),
            _t("[http-{n}] TokenService - issued token for user {user} ttl 3600s", "info", 0.35),
            _t("[http-{n}] TokenService - refreshed token for user {user}", "info", 0.25),
            _t(
                "[http-{n}] LoginHandler - invalid password for user {user} from {ip}",
                "warn",
                0.045,
            ),
            _t("[http-{n}] LdapClient - ldap bind failed for user {user}", "error", 0.005),
        ),
        "[main] TokenService - signing key missing, cannot issue tokens",
        2,
    ),
)


FATALS = (
    "[main] Storage - disk full writing journal segment {id}, aborting",
    "[tls] UpstreamPool - certificate expired for upstream {ip}, refusing connections",
    "[main] runtime - panic: index out of range [{n}] in request router",
    "[codec] NativeCodec - segmentation fault in native codec, core dumped",
    "[main] Config - required secret DB_PASSWORD not set, exiting",
    "[raft-{n}] Consensus - quorum lost, stepping down as leader",
)


def diurnal(t: np.ndarray, amplitude: float = 0.7, peak_hour: float = 15.0) -> np.ndarray:
    """Traffic multiplier over the day: 1 ± amplitude, peaking at `peak_hour` UTC."""
    phase = 2 * math.pi * ((t % DAY) / 3600.0 - peak_hour) / 24.0
    return 1.0 + amplitude * np.cos(phase)


def generate(
    start: float,
    duration: float,
    injections: Sequence[Injection] = (),
    services: Sequence[ServiceSpec] = SHOP,
    seed: int = 0,
    rate_scale: float = 1.0,
) -> Traffic:
    """Poisson arrivals per second per template, modulated by `diurnal` and by the
    injections (silence removes a service's records, a spike multiplies one
    template, bursts and fatal lines add records of their own)."""
    rng = np.random.default_rng(seed)
    seconds = np.arange(start, start + duration, 1.0)
    shape = diurnal(seconds)
    texts: list[str] = []
    levels: list[str] = []
    cols: list[tuple[np.ndarray, int, int]] = []
    names = [s.name for s in services]
    fatal: dict[int, int] = {}

    def add_text(text: str, level: str) -> int:
        texts.append(text)
        levels.append(level)
        return len(texts) - 1

    for si, svc in enumerate(services):
        factor = np.ones_like(seconds)
        error_template: dict[int, int] = {}
        for inj in injections:
            if inj.service == svc.name and inj.kind == "silence":
                factor[(seconds >= inj.start) & (seconds < inj.end)] = 0.0
        for ti, spec in enumerate(svc.templates):
            tid = add_text(spec.text, spec.level)
            lam = svc.rate * rate_scale * spec.weight * shape * factor
            if ti == svc.spike_template:
                for inj in injections:
                    if inj.service == svc.name and inj.kind == "rate_spike":
                        lam = np.where((seconds >= inj.start) & (seconds < inj.end), lam * 8, lam)
            cols.append((rng.poisson(lam), si, tid))
            if spec.level == "error" and ti not in error_template:
                error_template[ti] = tid
        burst_tid = next(iter(error_template.values()))
        for inj in injections:
            if inj.service != svc.name or inj.kind not in ("error_burst", "new_fatal"):
                continue
            if inj.kind == "error_burst":
                tid, rate = burst_tid, 2.0
            else:
                # Each injection gets a fatal line of its own: a repeat is no longer new.
                text = svc.fatal if not fatal else FATALS[(len(fatal) - 1) % len(FATALS)]
                tid, rate = add_text(f"FATAL {text}", "fatal"), 0.2
                fatal[len(fatal)] = tid
            lam = np.where((seconds >= inj.start) & (seconds < inj.end), rate, 0.0)
            cols.append((rng.poisson(lam), si, tid))

    ts_parts, svc_parts, tpl_parts = [], [], []
    for counts, si, tid in cols:
        n = int(counts.sum())
        if not n:
            continue
        ts_parts.append(np.repeat(seconds, counts) + rng.random(n))
        svc_parts.append(np.full(n, si, dtype=np.int32))
        tpl_parts.append(np.full(n, tid, dtype=np.int32))
    ts = np.concatenate(ts_parts)
    order = np.argsort(ts, kind="stable")
    return Traffic(
        ts[order],
        np.concatenate(svc_parts)[order],
        np.concatenate(tpl_parts)[order],
        names,
        texts,
        levels,
        list(injections),
    )


def plan(
    start: float,
    duration: float,
    per_kind: int,
    seed: int = 0,
    services: Sequence[ServiceSpec] = SHOP,
    warmup: float = 3 * 3600.0,
    gap: float = 2 * 3600.0,
) -> list[Injection]:
    """Incidents spread over the run after `warmup`, at least `gap` apart, rotating
    through kinds and services; durations are what such incidents last."""
    rng = np.random.default_rng(seed + 1)
    total = per_kind * len(KINDS)
    slots = int((duration - warmup) // gap)
    if slots < total:
        raise ValueError(f"{total} incidents do not fit {gap:.0f}s apart in the run")
    chosen = np.sort(rng.choice(slots, size=total, replace=False))
    kinds = [KINDS[i % len(KINDS)] for i in range(total)]
    rng.shuffle(kinds)
    out = []
    for n, (slot, kind) in enumerate(zip(chosen.tolist(), kinds, strict=True)):
        at = start + warmup + slot * gap + float(rng.uniform(0, gap / 3))
        svc = services[(n + int(rng.integers(len(services)))) % len(services)]
        length = {"error_burst": 180.0, "new_fatal": 60.0, "rate_spike": 240.0, "silence": 480.0}[
            kind
        ]
        detail = {
            "error_burst": "the routine error template at ~2/s",
            "new_fatal": "a fatal template never seen before",
            "rate_spike": "one template at 8x its rate",
            "silence": "the service stops logging",
        }[kind]
        out.append(Injection(kind, svc.name, at, at + length, detail))
    return out


_WORDS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")


def render(traffic: Traffic, seed: int = 0) -> Iterator[tuple[float, str, str, str]]:
    """(ts, service, level, line) per record, placeholders filled with plausible values."""
    rng = np.random.default_rng(seed + 2)
    n = len(traffic)
    nums = rng.integers(1, 64, n).tolist()
    ms = rng.integers(3, 900, n).tolist()
    ids = rng.integers(10_000_000, 99_999_999, n).tolist()
    users = rng.integers(0, len(_WORDS) * 100, n).tolist()
    ips = rng.integers(1, 254, (n, 2)).tolist()
    skus = rng.integers(1000, 9999, n).tolist()
    texts, levels, names = traffic.texts, traffic.levels, traffic.services
    for k, (t, si, ti) in enumerate(
        zip(traffic.ts.tolist(), traffic.service.tolist(), traffic.template.tolist(), strict=True)
    ):
        u = users[k]
        line = texts[ti].format(
            n=nums[k],
            ms=ms[k],
            id=ids[k],
            user=f"{_WORDS[u % 10]}{u // 10}",
            ip=f"10.0.{ips[k][0]}.{ips[k][1]}",
            sku=f"SKU-{skus[k]}",
        )
        yield t, names[si], levels[ti], line


def shipper_records(traffic: Traffic, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Records as Fluent Bit's kubernetes filter + http output (json_lines) send them."""
    for t, service, _level, line in render(traffic, seed):
        yield {
            "date": round(t, 6),
            "log": line,
            "kubernetes": {"namespace_name": "shop", "labels": {"app": service}},
        }


# -- the demo sample -----------------------------------------------------------------

DEMO_START = 1_767_261_600.0  # 2026-01-01 10:00 UTC: late-morning ramp-up
DEMO_DURATION = 2 * 3600.0
DEMO_SEED = 7


def demo_injections(start: float = DEMO_START) -> list[Injection]:
    minute = 60.0
    return [
        Injection(
            "error_burst",
            "payments",
            start + 40 * minute,
            start + 43 * minute,
            "the routine 'charge declined' error at ~2/s",
        ),
        Injection(
            "new_fatal",
            "inventory",
            start + 55 * minute,
            start + 56 * minute,
            "OutOfMemoryError, a fatal line never seen before",
        ),
        Injection(
            "rate_spike",
            "checkout",
            start + 70 * minute,
            start + 74 * minute,
            "GET /api/cart at 8x its rate",
        ),
        Injection(
            "silence",
            "auth",
            start + 85 * minute,
            start + 93 * minute,
            "auth stops logging for 8 minutes",
        ),
    ]


def write_demo_sample(directory: Path) -> int:
    """Regenerate the shipped sample (deterministic): `python -m logguardian.scenarios`."""
    injections = demo_injections()
    traffic = generate(DEMO_START, DEMO_DURATION, injections, seed=DEMO_SEED)
    directory.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(directory / "sample.jsonl.gz", "wb", mtime=0) as out:
        for doc in shipper_records(traffic, DEMO_SEED):
            out.write(orjson.dumps(doc) + b"\n")
    truth = {
        "start": DEMO_START,
        "duration": DEMO_DURATION,
        "records": len(traffic),
        "services": traffic.services,
        "injections": [i.to_dict() for i in injections],
    }
    (directory / "truth.json").write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return len(traffic)


if __name__ == "__main__":
    target = Path(__file__).resolve().parent / "data" / "demo"
    print(f"wrote {write_demo_sample(target)} records to {target}")
