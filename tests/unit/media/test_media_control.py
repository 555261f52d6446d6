"""The typed media control protocol: wire round trips, clear refusals, both clients alike."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from media_gateway.media import control as mc
from media_gateway.media.client import LocalMedia, MediaClient, MediaProcess
from media_gateway.media.engine import MediaError
from media_gateway.sip_leg import MediaUpdate

STATS = mc.ChannelStats(
    chan="c1",
    packets_in=50,
    packets_out=49,
    lost=1,
    jitter_ms=0.5,
    peer_fraction_lost=0.25,
    peer_jitter_ms=1.5,
    bad_packets=2,
    concealed=1,
    remote="127.0.0.1:4000",
)

OPS: list[mc.MediaOp[Any]] = [
    mc.Open(chan="c1"),
    mc.Open(
        chan="w1",
        kind="samples",
        codec="PCMA",
        pt=8,
        te_pt=None,
        remote=("10.0.0.1", 4000),
        inband=True,
        direction="recvonly",
    ),
    mc.Update(chan="c1", codec="PCMU", pt=0, te_pt=None, direction="sendonly"),
    mc.Update(
        chan="c1",
        codec="PCMA",
        pt=8,
        te_pt=101,
        direction="sendrecv",
        inband=False,
        remote=("::1", 5000),
    ),
    mc.Close(chan="c1"),
    mc.Play(chan="c1", op_id="p1", prompts=("welcome", "menu"), lang="en", loop=True),
    mc.Play(chan="c1", file="/tmp/x.wav", interruptible=False),
    mc.Play(chan="c1", spec="tone:1000:400"),
    mc.StopPlay(chan="c1"),
    mc.Record(
        chan="c1",
        path="/tmp/r.wav",
        op_id="r1",
        max_seconds=30,
        silence_seconds=2.5,
        stop_digits="#*",
    ),
    mc.StopRecord(chan="c1"),
    mc.RecordCall(a="c1", b="c2", path="/tmp/call.wav", op_id="rc1", max_seconds=3600),
    mc.StopRecordCall(chan="c2"),
    mc.Bridge(a="c1", b="c2"),
    mc.Unbridge(chan="c1"),
    mc.Mute(chan="c1", on=True),
    mc.Mix(chan="s1", sources=("c1", "c2")),
    mc.Echo(chan="c1", on=False),
    mc.SendDtmf(chan="c1", digits="123#", duration_ms=80),
    mc.Digit(chan="c1", digit="5", method="webrtc"),
    mc.WatchRtp(chan="c1"),
    mc.GetStats(chan="c1"),
    mc.ServerStats(),
    mc.Ping(),
    mc.WebRtcOffer(chan="w1", sdp="v=0\r\n"),
    mc.WebRtcMakeOffer(chan="w1"),
    mc.WebRtcAnswer(chan="w1", sdp="v=0\r\n"),
    mc.WebRtcClose(chan="w1"),
    mc.WebRtcStats(chan="w1"),
]

REPLIES: list[tuple[mc.MediaOp[Any], object]] = [
    (mc.Open(chan="c1"), mc.Opened(chan="c1", port=20000, host="127.0.0.1")),
    (mc.Open(chan="w1", kind="samples"), mc.Opened(chan="w1")),
    (mc.Update(chan="c1", codec="PCMU", pt=0, te_pt=101, direction="sendrecv"), mc.Ack()),
    (mc.Close(chan="c1"), mc.Closed(stats=STATS)),
    (mc.Close(chan="gone"), mc.Closed(stats=None)),
    (mc.Play(chan="c1", spec="beep"), mc.Playing(ms=250)),
    (mc.SendDtmf(chan="c1", digits="1"), mc.DtmfSent(packets=9)),
    (mc.GetStats(chan="c1"), mc.Stats(stats=STATS)),
    (mc.ServerStats(), mc.ServerStatus(channels=3, ticks=1000, late_ticks=0, ports_in_use=3)),
    (mc.Ping(), mc.Pong(pid=4242)),
    (mc.WebRtcOffer(chan="w1", sdp="v=0"), mc.WebRtcSdp(chan="w1", sdp="v=0\r\no=-")),
    (mc.WebRtcMakeOffer(chan="w1"), mc.WebRtcSdp(chan="w1", sdp="v=0\r\no=-")),
    (
        mc.WebRtcStats(chan="w1"),
        mc.WebRtcStatus(
            connection="connected", ice="completed", frames_in=10, queued_out=1, dropped_out=0
        ),
    ),
]

EVENTS: list[mc.MediaEvent] = [
    mc.DtmfReceived(chan="c1", digit="#", method="rfc4733", duration_ms=120),
    mc.PlayDone(chan="c1", op="p1", reason="finished", played_ms=400),
    mc.PlayDone(chan="c1", op="p2", reason="dtmf", played_ms=20, digit="1"),
    mc.RecordDone(
        chan="c1", op="r1", path="/tmp/r.wav", reason="silence", seconds=2.5, heard_sound=True
    ),
    mc.RecordDone(chan="c1", op="r2", path="/x", reason="hangup", error="/x: Permission denied"),
    mc.RtpTimeout(chan="c1", silent_seconds=30.0),
    mc.MediaLost(chan="c1", reason="ice"),
    mc.MediaLost(chan="c1"),
    mc.Ready(pid=1234, loop="uvloop"),
]


def _wire(line: bytes) -> dict[str, Any]:
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    msg = json.loads(line)
    assert isinstance(msg, dict)
    return msg


def test_the_samples_cover_every_operation_reply_and_event() -> None:
    assert {type(op) for op in OPS} == set(mc.OPERATIONS)
    assert {type(e) for e in EVENTS} == set(mc.EVENTS)
    replies = {mc.reply_type(op) for op in OPS} - {mc.Ack, mc.Closed}
    assert replies <= {type(r) for _, r in REPLIES}
    assert len({cls.TAG for cls in mc.OPERATIONS}) == len(mc.OPERATIONS)


def test_operations_are_frozen_slotted_and_keyword_only() -> None:
    op = mc.Bridge(a="x", b="y")
    assert not hasattr(op, "__dict__")
    with pytest.raises(AttributeError):
        op.a = "z"  # type: ignore[misc]
    with pytest.raises(TypeError):
        mc.Bridge("x", "y")  # type: ignore[call-arg]


@pytest.mark.parametrize("op", OPS, ids=lambda op: type(op).__name__)
def test_every_operation_round_trips_through_the_wire(op: mc.MediaOp[Any]) -> None:
    msg = _wire(mc.encode_request(17, op))
    assert msg["id"] == 17 and msg["op"] == op.TAG
    assert mc.decode_request(msg) == op


@pytest.mark.parametrize("op,reply", REPLIES, ids=lambda x: type(x).__name__)
def test_every_reply_round_trips(op: mc.MediaOp[Any], reply: object) -> None:
    assert isinstance(reply, mc.reply_type(op))
    msg = _wire(mc.encode_reply(3, reply))
    assert (msg.pop("id"), msg.pop("ok")) == (3, True)
    assert mc.decode_reply(op, msg) == reply


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips(event: mc.MediaEvent) -> None:
    msg = _wire(mc.encode_event(event))
    assert msg["event"] == event.TAG and "id" not in msg
    assert mc.decode_event(msg) == event


@pytest.mark.parametrize(
    "msg,problem",
    [
        ({"id": 1, "op": "explode"}, "unknown operation 'explode'"),
        ({"id": 1}, "unknown operation None"),
        ({"op": 5}, "unknown operation 5"),
        ({"op": "open"}, "bad 'open' request: field 'chan' is missing"),
        ({"op": "bridge", "a": "x"}, "bad 'bridge' request: field 'b' is missing"),
        (
            {"op": "open", "chan": 7},
            "bad 'open' request: field 'chan': Input should be a valid string",
        ),
        ({"op": "open", "chan": "c", "pt": "8"}, "bad 'open' request: field 'pt'"),
        ({"op": "echo", "chan": "c", "on": "yes"}, "bad 'echo' request: field 'on'"),
        ({"op": "echo", "chan": "c", "on": 1}, "bad 'echo' request: field 'on'"),
        ({"op": "open", "chan": "c", "kind": "video"}, "bad 'open' request: field 'kind'"),
        ({"op": "open", "chan": "c", "remote": ["1.2.3.4"]}, "field 'remote.1' is missing"),
        ({"op": "open", "chan": "c", "remote": ["1.2.3.4", "x"]}, "field 'remote.1'"),
        (
            {"op": "update", "chan": "c", "codec": "PCMU", "pt": 0, "te_pt": None},
            "field 'direction' is missing",
        ),
        ({"op": "play", "chan": "c", "prompts": "welcome"}, "bad 'play' request: field 'prompts'"),
        (
            {"op": "close", "chan": "c", "force": True},
            "bad 'close' request: field 'force' is unknown",
        ),
    ],
)
def test_a_bad_request_is_a_media_error_naming_op_and_field(
    msg: dict[str, Any], problem: str
) -> None:
    with pytest.raises(MediaError) as info:
        mc.decode_request(msg)
    assert problem in str(info.value)


def test_bad_events_replies_and_lines_are_media_errors() -> None:
    with pytest.raises(MediaError, match="unknown event 'boom'"):
        mc.decode_event({"event": "boom", "chan": "c"})
    with pytest.raises(MediaError, match="bad 'dtmf' event: field 'digit' is missing"):
        mc.decode_event({"event": "dtmf", "chan": "c"})
    with pytest.raises(MediaError, match="bad reply to 'open': field 'port'"):
        mc.decode_reply(mc.Open(chan="c"), {"chan": "c", "port": "20000"})
    with pytest.raises(MediaError, match="bad line"):
        mc.decode_line(b"{not json\n")
    with pytest.raises(MediaError, match="JSON object"):
        mc.decode_line(b"[1, 2]\n")


def test_update_is_built_from_the_negotiated_media() -> None:
    neg = MediaUpdate(
        codec="PCMA", pt=8, te_pt=None, direction="recvonly", remote=("10.0.0.9", 7000), held=True
    )
    assert neg.op("c9") == mc.Update(
        chan="c9",
        codec="PCMA",
        pt=8,
        te_pt=None,
        direction="recvonly",
        inband=True,
        remote=("10.0.0.9", 7000),
    )
    assert neg.op("c9", direction="sendonly").direction == "sendonly"
    assert mc.decode_request(_wire(mc.encode_request(1, neg.op("c9")))) == neg.op("c9")


# -- a real server, in a child process and on this loop ----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Explode(mc.MediaOp[mc.Ack]):
    """An operation the media server does not know."""

    TAG: ClassVar[str] = "explode"


@dataclass(frozen=True, slots=True, kw_only=True)
class _BadOpen(mc.MediaOp[mc.Opened]):
    """``open`` as a buggy or foreign client would send it."""

    TAG: ClassVar[str] = "open"
    chan: int


async def _typed_session(media: MediaClient) -> None:
    opened = await media.request(mc.Open(chan="t1", te_pt=None))
    assert isinstance(opened, mc.Opened) and opened.chan == "t1"
    assert opened.port is not None and opened.port % 2 == 0 and opened.host == "127.0.0.1"
    samples = await media.request(mc.Open(chan="t2", kind="samples"))
    assert samples == mc.Opened(chan="t2")
    update = mc.Update(
        chan="t1", codec="PCMA", pt=8, te_pt=101, direction="sendonly", remote=("127.0.0.1", 9)
    )
    assert await media.request(update) == mc.Ack()
    assert await media.request(mc.Bridge(a="t1", b="t2")) == mc.Ack()
    assert await media.request(mc.Unbridge(chan="t1")) == mc.Ack()
    playing = await media.request(mc.Play(chan="t1", spec="silence:500", op_id="s"))
    assert playing == mc.Playing(ms=500)
    stats = await media.request(mc.GetStats(chan="t1"))
    assert isinstance(stats.stats, mc.ChannelStats)
    assert (stats.stats.chan, stats.stats.remote) == ("t1", "127.0.0.1:9")
    status = await media.request(mc.ServerStats())
    assert (status.channels, status.ports_in_use) == (2, 1)
    closed = await media.request(mc.Close(chan="t1"))
    assert closed.stats is not None and closed.stats.chan == "t1"
    assert (await media.request(mc.Close(chan="t1"))).stats is None
    await media.request(mc.Close(chan="t2"))
    with pytest.raises(MediaError, match="no channel 't1'"):
        await media.request(mc.Bridge(a="t1", b="t2"))
    with pytest.raises(MediaError, match="IP literal"):
        await media.request(mc.Open(chan="x", remote=("example.com", 5000)))
    with pytest.raises(MediaError, match="'explode'"):
        await media.request(_Explode())


async def test_local_media_answers_typed_operations() -> None:
    media = LocalMedia(port_min=31700, port_max=31800)
    await media.start()
    try:
        await _typed_session(media)
        assert await media.request(mc.Ping()) == mc.Pong(pid=os.getpid())
    finally:
        await media.close()


async def test_the_media_process_answers_typed_operations_and_refuses_bad_ones() -> None:
    media = MediaProcess(port_min=31800, port_max=31900)
    await media.start()
    try:
        await _typed_session(media)
        assert await media.request(mc.Ping()) == mc.Pong(pid=media.pid)
        with pytest.raises(MediaError, match="unknown operation 'explode'"):
            await media.request(_Explode())
        with pytest.raises(MediaError, match="bad 'open' request: field 'chan'"):
            await media.request(_BadOpen(chan=5))
        # Still serving after the refusals.
        assert (await media.request(mc.ServerStats())).channels == 0
    finally:
        await media.close()


async def test_a_dead_media_process_reports_media_lost_and_is_restarted() -> None:
    media = MediaProcess(port_min=31900, port_max=32000)
    await media.start()
    lost: list[mc.ChannelEvent] = []
    arrived = asyncio.Event()

    def on_event(event: mc.ChannelEvent) -> None:
        lost.append(event)
        arrived.set()

    try:
        await media.request(mc.Open(chan="d1"))
        media.subscribe("d1", on_event)
        old = media.pid
        os.kill(old, signal.SIGKILL)
        await asyncio.wait_for(arrived.wait(), 10)
        assert lost == [mc.MediaLost(chan="d1", reason="process_exited")]
        async with asyncio.timeout(30):
            while media.restarts < 1 or media.pid == old:
                await asyncio.sleep(0.05)
        assert (await media.request(mc.Ping())).pid == media.pid != old
    finally:
        await media.close()
