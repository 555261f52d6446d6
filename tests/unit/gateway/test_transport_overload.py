"""The asyncio shell's overload control on a real UDP socket: once the event loop lags past the
threshold, a new INVITE gets 503 with Retry-After; when the lag is gone, calls are taken again."""

from __future__ import annotations

import asyncio
import random
import socket
import time

from media_gateway.sip import events as ev
from media_gateway.sip.endpoint import EndpointConfig, SipEndpoint
from media_gateway.transport import SipTransport


def _invite(port: int, local: int, n: int) -> bytes:
    return (
        f"INVITE sip:1000@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-ovl-{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=ovl{n}\r\n"
        f"To: <sip:1000@127.0.0.1>\r\nCall-ID: ovl-{n}@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@127.0.0.1:{local}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def _final_status(sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    while True:
        data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 3)
        status = int(data.split(b" ", 2)[1])
        if status >= 200:
            assert status != 503 or b"Retry-After: 7" in data
            return status


async def _scenario() -> None:
    endpoint = SipEndpoint(EndpointConfig(retry_after=7), rng=random.Random(1))
    invites: list[object] = []

    def on_event(event: object) -> None:
        if isinstance(event, ev.InviteReceived):
            invites.append(event)
            endpoint.respond(event.call, 486, now=asyncio.get_running_loop().time())

    transport = SipTransport(endpoint, on_event, max_loop_lag=0.1, lag_grace=0.0)
    await transport.start("127.0.0.1", 0, ("udp",))
    assert transport.local_udp is not None
    port = transport.local_udp[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        local = sock.getsockname()[1]
        await asyncio.sleep(0.12)
        # A healthy loop: the call reaches the transaction user (which declines it).
        sock.sendto(_invite(port, local, 1), ("127.0.0.1", port))
        assert await _final_status(sock) == 486
        # Something blocks the loop for 300 ms: the lag watcher raises the overload flag.
        asyncio.get_running_loop().call_soon(time.sleep, 0.3)
        await asyncio.sleep(0.12)
        assert endpoint.overloaded
        sock.sendto(_invite(port, local, 2), ("127.0.0.1", port))
        assert await _final_status(sock) == 503
        assert endpoint.stats["overload_rejections"] == 1
        # The lag is gone: after the hold time the flag drops and calls are taken again.
        await asyncio.sleep(transport.overload_hold + 0.2)
        assert not endpoint.overloaded
        sock.sendto(_invite(port, local, 3), ("127.0.0.1", port))
        assert await _final_status(sock) == 486
    assert len(invites) == 2
    await transport.close()


def test_loop_lag_turns_new_invites_away_with_503() -> None:
    asyncio.run(_scenario())


async def _stall_at_start() -> None:
    endpoint = SipEndpoint(EndpointConfig(retry_after=7), rng=random.Random(1))
    transport = SipTransport(endpoint, lambda event: None, max_loop_lag=0.1, lag_grace=1.0)
    await transport.start("127.0.0.1", 0, ("udp",))
    # Starting up stalls the loop (prompts, registrations): within the grace it raises nothing.
    asyncio.get_running_loop().call_soon(time.sleep, 0.3)
    await asyncio.sleep(0.15)
    assert not endpoint.overloaded
    await asyncio.sleep(1.0)
    # Past the grace the same stall counts.
    asyncio.get_running_loop().call_soon(time.sleep, 0.3)
    await asyncio.sleep(0.15)
    assert endpoint.overloaded
    await transport.close()


def test_a_stall_while_starting_up_does_not_turn_callers_away() -> None:
    asyncio.run(_stall_at_start())
