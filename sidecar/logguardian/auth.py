"""HTTP credentials (`receivers.http.auth_token`, `basic_user`/`basic_password`): one
check for ingest and for the API, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac


class HttpAuth:
    def __init__(
        self,
        token: str | None = None,
        basic_user: str | None = None,
        basic_password: str | None = None,
    ):
        self._token = token.encode() if token is not None else None
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

    def check(self, header: str) -> bool:
        """True when `header` (an `Authorization` value) carries the configured
        credentials, or when none are configured."""
        if not self.required:
            return True
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if self._token is not None and scheme == "bearer":
            return hmac.compare_digest(value.encode(), self._token)
        if self._basic is not None and scheme == "basic":
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(given, self._basic)
        return False
