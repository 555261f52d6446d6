"""Per-call RTP endpoints for the signalling-only stage: the ``*43`` echo test and a sink.

Until the media process (issue 3) takes over, a call's RTP port pair is an asyncio datagram
endpoint in the signalling process:

* ``echo``: every RTP/RTCP packet goes back to the address it came from (symmetric RTP, so a
  caller behind NAT hears itself), unchanged: the caller's own SSRC comes back, which is what an
  echo test is for;
* ``sink``: packets are counted and dropped (the placeholder hotline handler).

Ports come from the configured even-numbered range; RTCP uses port + 1 (RFC 3550 §11).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from typing import cast


class RtpPortAllocator:
    """Hands out even RTP ports from ``[low, high)`` round-robin; RTCP is port + 1."""

    def __init__(self, low: int, high: int) -> None:
        self.low = low + (low % 2)
        self.high = high
        self._next = self.low
        self.in_use: set[int] = set()

    def take(self) -> int:
        span = (self.high - self.low) // 2
        for _ in range(span):
            port = self._next
            self._next += 2
            if self._next >= self.high - 1:
                self._next = self.low
            if port not in self.in_use:
                self.in_use.add(port)
                return port
        raise RuntimeError("no free RTP port in the configured range")

    def release(self, port: int) -> None:
        self.in_use.discard(port)


@dataclass
class _Counters:
    packets_in: int = 0
    packets_out: int = 0
    last_source: tuple[str, int] | None = None


class _EchoProtocol(asyncio.DatagramProtocol):
    def __init__(self, echo: bool, counters: _Counters) -> None:
        self.echo = echo
        self.counters = counters
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Neither asyncio's selector transport nor uvloop's UDPTransport is an instance of
        # asyncio.DatagramTransport, though both provide its interface.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.counters.packets_in += 1
        self.counters.last_source = (addr[0], addr[1])
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)
            self.counters.packets_out += 1

    def error_received(self, exc: Exception) -> None:
        return  # the caller went away; the call's signalling will end it


@dataclass
class RtpEndpoint:
    """An RTP+RTCP socket pair bound for one call."""

    host: str
    port: int
    mode: str
    counters: _Counters = field(default_factory=_Counters)
    transports: list[asyncio.DatagramTransport] = field(default_factory=list)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for p in (self.port, self.port + 1):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, p))
            except OSError:
                sock.close()
                self.close()
                raise
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _EchoProtocol(self.mode == "echo", self.counters), sock=sock
            )
            self.transports.append(transport)

    def close(self) -> None:
        for t in self.transports:
            with contextlib.suppress(Exception):
                t.close()
        self.transports.clear()


class RtpEndpoints:
    """Opens and closes per-call endpoints, retrying when a port is taken by someone else."""

    def __init__(self, host: str, low: int, high: int) -> None:
        self.host = host
        self.ports = RtpPortAllocator(low, high)
        self.open_endpoints: dict[str, RtpEndpoint] = {}

    async def open(self, call_id: str, mode: str) -> RtpEndpoint:
        last: OSError | None = None
        for _ in range(16):
            port = self.ports.take()
            ep = RtpEndpoint(self.host, port, mode)
            try:
                await ep.open()
            except OSError as exc:
                # Taken by another process, or by one of ours whose close is still pending
                # (asyncio closes a transport on the next loop pass). Give it back: the
                # allocator is round-robin, so it is tried again only after the whole range.
                self.ports.release(port)
                last = exc
                continue
            self.open_endpoints[call_id] = ep
            return ep
        raise RuntimeError(f"could not bind an RTP port pair: {last}")

    def close(self, call_id: str) -> None:
        ep = self.open_endpoints.pop(call_id, None)
        if ep is not None:
            ep.close()
            self.ports.release(ep.port)

    def close_all(self) -> None:
        for call_id in list(self.open_endpoints):
            self.close(call_id)
