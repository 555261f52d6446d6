"""A SIP desk phone sees the queue and the caller in the INVITE's From display name.

An in-process Hotline with its media process; bob's phone is SIPp (registered as bob, then a
UAS that answers and hangs up); the caller is SIPp calling the sales queue as +33612345678.
What bob notices before answering: his phone's screen says ``sales: +33612345678`` (the
INVITE's From is ``"sales: +33612345678" <sip:+33612345678@...>``, read from the message
trace of the phone itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hotline.config import parse_config
from hotline.server import Hotline
from media_gateway.audio.tones import silence
from media_gateway.sip.headers import parse_name_addr
from tests.interop.harness import SCENARIOS, free_port, run_sipp
from tests.interop.media_harness import (
    pcmu_packets,
    rtp_socket,
    sip_address,
    sipp,
    write_rtp_pcap,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

CALLER = "+33612345678"

CONFIG = """
[server]
sip = "127.0.0.1:{sip}"
data_dir = "{data}"
log_level = "warning"

[sip]
transports = ["udp"]
rtp_ports = [46400, 46998]

[media]
process = true
rtp_timeout = 20

[[agents]]
id = "bob"
password = "pw-bob-1"
skills = {{ sales = 5 }}
queues = ["sales"]

[entry_points]
"1000" = {{ kind = "queue", target = "sales" }}

[acd.queues.sales]
strategy = "longest-idle"
ring_timeout = 10
"""


@pytest.fixture
async def hotline(tmp_path: Path) -> AsyncIterator[Hotline]:
    text = CONFIG.format(sip=free_port(), data=tmp_path / "data")
    hl = Hotline(parse_config(text, file="display-name-test.toml"))
    await hl.start()
    try:
        yield hl
    finally:
        await asyncio.wait_for(hl.stop(), 20)


def received_invite_from(trace: str) -> str:
    """The From header of the first INVITE in a SIPp message trace."""
    lines = trace.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("INVITE sip:"))
    for line in lines[start:]:
        if line.lower().startswith(("from:", "f:")):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no From header in the INVITE:\n{trace}")


async def test_the_agents_phone_shows_the_queue_and_the_caller(
    hotline: Hotline, tmp_path: Path
) -> None:
    gw = hotline
    phone_port = free_port()
    reg = await asyncio.to_thread(
        run_sipp,
        [
            *("-sf", str(SCENARIOS / "register.xml"), "-s", "bob"),
            *("-au", "bob", "-ap", "pw-bob-1", "-m", "1"),
        ],
        workdir=tmp_path / "register",
        target=sip_address(gw),
        timeout=20,
        local_port=phone_port,
    )
    assert reg.successful == 1, reg.stdout + reg.errors
    async with asyncio.timeout(15):
        while gw.center.engine.snapshot()["agents"]["bob"]["status"] != "available":
            await asyncio.sleep(0.05)

    agent_dir = tmp_path / "phone"
    agent_dir.mkdir()
    write_rtp_pcap(agent_dir / "phone.pcap", pcmu_packets(silence(1.0), ssrc=0xB0B))
    caller_dir = tmp_path / "caller"
    caller_dir.mkdir()
    scenario = caller_dir / "caller.xml"
    text = (SCENARIOS / "media_caller.xml").read_text()
    scenario.write_text(text.replace("caller <sip:caller@", f"caller <sip:{CALLER}@"))

    async with (
        rtp_socket() as ear,
        sipp(
            "agent_answer_hangup.xml",
            workdir=agent_dir,
            target=None,
            local_port=phone_port,
            timeout=40,
            extra=["-d", "500"],
        ) as phone,
        sipp(
            str(scenario),
            workdir=caller_dir,
            target=sip_address(gw),
            keys={"rtp_port": ear.port},
            timeout=40,
        ) as caller,
    ):
        assert await phone.wait(30) == 0, phone.report()
        assert await caller.wait(30) == 0, caller.report()

    trace = (agent_dir / f"messages-{phone.port}.log").read_text(errors="replace")
    header = received_invite_from(trace)
    assert header.startswith(f'"sales: {CALLER}" <sip:{CALLER}@'), header
    from_ = parse_name_addr(header)
    assert from_.display == f"sales: {CALLER}"
