"""The echo test's RTP endpoint returns every packet to where it came from (symmetric RTP)."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from media_gateway.rtp_echo import RtpEndpoints, RtpPortAllocator


async def _roundtrip() -> None:
    endpoints = RtpEndpoints("127.0.0.1", 31000, 31100)
    ep = await endpoints.open("call-1", "echo")
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
        caller.bind(("127.0.0.1", 0))
        caller.setblocking(False)
        for i in range(5):
            caller.sendto(bytes([0x80, 0, 0, i]) + b"x" * 160, ("127.0.0.1", ep.port))
        got = [await asyncio.wait_for(loop.sock_recv(caller, 2048), 2) for _ in range(5)]
    assert [g[3] for g in got] == [0, 1, 2, 3, 4]
    assert ep.counters.packets_in == ep.counters.packets_out == 5
    endpoints.close("call-1")
    assert endpoints.open_endpoints == {}
    assert ep.port not in endpoints.ports.in_use


@pytest.mark.parametrize("runner", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_echo_returns_packets_to_their_source(runner: object) -> None:
    runner(_roundtrip())  # type: ignore[operator]


def test_port_allocator_hands_out_even_ports_and_reuses_released_ones() -> None:
    ports = RtpPortAllocator(20001, 20007)
    taken = [ports.take(), ports.take()]
    assert taken == [20002, 20004]
    with pytest.raises(RuntimeError):
        ports.take()
    ports.release(20002)
    assert ports.take() == 20002


async def _busy_port_is_not_lost() -> None:
    endpoints = RtpEndpoints("127.0.0.1", 31200, 31206)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 31200))  # someone else holds the first port
    try:
        ep = await endpoints.open("a", "sink")
        assert ep.port == 31202
        assert 31200 not in endpoints.ports.in_use  # given back, not leaked
    finally:
        blocker.close()
    endpoints.close("a")
    # Once free again, the whole range is usable: nothing leaked.
    eps = [await endpoints.open(f"c{i}", "sink") for i in range(3)]
    assert sorted(e.port for e in eps) == [31200, 31202, 31204]
    endpoints.close_all()


def test_a_port_that_fails_to_bind_is_not_leaked() -> None:
    asyncio.run(_busy_port_is_not_lost())
