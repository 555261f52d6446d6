"""Issue 11, media resources: a media process whose RTP ports are all taken answers the next
call's open at once with an error (the signalling side turns it into ``503`` with
``Retry-After``), with no traceback in its log. Before, the allocator's RuntimeError escaped the
request task: a traceback in the media process, no answer, and the call waited for the 10 s
control timeout.

(The full ACKed-INVITE port flood from SIPp in a namespace, with ``rtp_start_timeout`` and
the per-source call limit: tests/interop/test_media_flood.py.)"""

from __future__ import annotations

import asyncio

import pytest

from media_gateway.media import control as mc
from media_gateway.media.client import MediaProcess
from media_gateway.media.engine import MediaError
from tests.interop.harness import free_port

pytestmark = pytest.mark.interop


async def test_running_out_of_rtp_ports_is_answered_at_once_without_a_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    low = free_port(pair=True)
    media = MediaProcess(port_min=low, port_max=low + 4)  # room for two calls
    await media.start()
    try:
        for chan in ("a", "b"):
            opened = await media.request(mc.Open(chan=chan))
            assert opened.port is not None
        with pytest.raises(MediaError, match="no free RTP port"):
            # at once: well inside the 10 s control timeout it used to wait for
            await asyncio.wait_for(media.request(mc.Open(chan="c")), 3.0)
        await media.request(mc.Close(chan="a"))  # a call ends: its ports serve the next
        assert (await media.request(mc.Open(chan="d"))).port is not None
    finally:
        await media.close()
    assert "Traceback" not in capfd.readouterr().err
