"""SIP over TLS (RFC 3261 §26.2, RFC 5630): the listening side's settings and SSL context.

The TLS itself is Python's ``ssl`` module under asyncio's ``create_server(ssl=...)``; the
connections are the TCP transport's (``media_gateway/transport.py``): the same framing and
limits, ``transport=tls`` in Via and Contact, responses and calls to a phone over the
connection it opened. New outbound TLS connections are not made (no peer certificate to
verify a phone against): a phone registered over TLS is reached over its own connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class SipTlsSettings:
    """``[sip.tls]``: where SIP over TLS listens and with which certificate."""

    port: int = 5061
    """The TLS port (on the SIP address's host); 0 picks a free one (tests)."""
    cert: str = ""
    """PEM certificate (chain) file; empty: no SIP over TLS."""
    key: str = ""
    """PEM private key file of ``cert``."""

    @property
    def enabled(self) -> bool:
        return bool(self.cert)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 at least, the system's default ciphers, no client
    certificate asked for (phones authenticate by digest). Raises OSError or ssl.SSLError when
    the files cannot be loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
