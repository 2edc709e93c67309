"""Credentials: one check for HTTP ingest, every API route, gRPC metadata and the
Logstash TCP handshake, compared in constant time. What is configured where is
decided once, in `config.Settings` (the `auth` section, copied into every receiver
that sets none of its own); this module only checks."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress


class HttpAuth:
    def __init__(
        self,
        token: str | None = None,
        basic_user: str | None = None,
        basic_password: str | None = None,
    ):
        self._token = token.encode() if token else None
        self._basic = (
            f"{basic_user}:{basic_password or ''}".encode() if basic_user is not None else None
        )

    @property
    def required(self) -> bool:
        return self._token is not None or self._basic is not None

    @property
    def challenge(self) -> str:
        """`WWW-Authenticate` for a 401."""
        return 'Bearer realm="logguardian"' if self._token else 'Basic realm="logguardian"'

    def check(self, header: str | bytes) -> bool:
        """True when `header` (an `Authorization` value) carries the configured
        credentials, or when none are configured. The scheme is case-insensitive
        (RFC 9110 §11.1); a header that is not ASCII is simply wrong, never an error."""
        if not self.required:
            return True
        if isinstance(header, str):
            try:
                raw = header.encode("ascii")
            except UnicodeEncodeError:
                return False
        else:
            raw = bytes(header)
        scheme, _, value = raw.strip().partition(b" ")
        scheme = scheme.lower()
        value = value.strip()
        if self._token is not None and scheme == b"bearer":
            return hmac.compare_digest(value, self._token)
        if self._basic is not None and scheme == b"basic":
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(given, self._basic)
        return False


def is_loopback(host: str) -> bool:
    """Only this machine can reach a socket bound to `host` (127.0.0.0/8, ::1,
    localhost). `0.0.0.0`, `::`, `""` and every other name or address are reachable
    from outside."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False
