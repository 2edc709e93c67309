"""Incident traffic with secrets planted in the records, for the explanation tests:
none of `SECRETS` may ever reach an LLM server."""

from __future__ import annotations

import time
from typing import Any

from .traffic import normal_records, novel_records

SECRETS = {
    "email": "alice.jones@example.com",
    "ip": "10.20.30.40",
    "card": "4111 1111 1111 1111",
    "bearer": "sk_live_abcdefgh12345678",
    "aws_key": "AKIAIOSFODNN7EXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA",
    "phone": "+1 415-555-0132",
    "custom": "ORD-99817",
}
MASK_PATTERNS = [r"ORD-\d+"]


def secret_line(n: int) -> str:
    s = SECRETS
    return (
        f"charge failed for {s['email']} card {s['card']} from {s['ip']} "
        f"Authorization: Bearer {s['bearer']} key {s['aws_key']} token {s['jwt']} "
        f"phone {s['phone']} order {s['custom']} attempt {n}"
    )


def baseline_records(service: str, n: int = 200) -> list[dict[str, Any]]:
    return normal_records(service, n)


def incident_records(service: str, n: int = 5, ts: float | None = None) -> list[dict[str, Any]]:
    """New templates (each line its own), every one carrying all the secrets."""
    out = novel_records(service, 0, n, time.time() if ts is None else ts)
    for k, record in enumerate(out):
        record["log"] = f"{record['log']} {secret_line(k)}"
        record["kubernetes"]["labels"] = {"app.kubernetes.io/version": "1.4.2"}
    return out
