"""TLS for the stream receivers (Forward, Logstash tcp): a server certificate, and
with a client CA, required client certificates (mutual TLS, which is how Logstash's
tcp output authenticates: `ssl_certificate`/`ssl_key`)."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(
    name: str, cert: Path | None, key: Path | None, client_ca: Path | None
) -> ssl.SSLContext | None:
    """None without a certificate; a half-configured pair is a startup error naming
    the settings (`receivers.<name>.tls_*`)."""
    if cert is None and key is None:
        if client_ca is not None:
            raise ValueError(
                f"receivers.{name}.tls_client_ca_file needs tls_cert_file and tls_key_file"
            )
        return None
    if cert is None or key is None:
        raise ValueError(
            f"receivers.{name}.tls_cert_file and receivers.{name}.tls_key_file must be set together"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_verified(writer: object) -> bool:
    """The peer presented a certificate our client CA verified (the handshake already
    refused any other when one is required)."""
    get = getattr(writer, "get_extra_info", None)
    return bool(get is not None and get("peercert"))
