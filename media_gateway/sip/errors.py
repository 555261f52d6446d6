"""Errors of the SIP core. Remote input never escapes as a traceback: the endpoint turns a
``SipParseError`` into the status it hints at (or drops the message when no reply is possible)."""

from __future__ import annotations


class SipError(Exception):
    """Base class of every error raised by the SIP core."""


class SipParseError(SipError):
    """A message (or part of one) that does not follow the RFC 3261 grammar.

    ``status_hint`` is the response a server should send when it can build one (400 by
    default; 505 for an unsupported version, 413/513 for oversized input, 416 for a URI scheme
    we cannot handle).
    """

    def __init__(self, message: str, *, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class TransactionError(SipError):
    """A misuse of the transaction layer by our own code (not by a peer)."""
