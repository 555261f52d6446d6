"""SDP parsing/serialising (RFC 4566) and offer/answer (RFC 3264) with real phones' bodies."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media_gateway.sdp.offer_answer import (
    LocalSession,
    NoCommonCodec,
    answer_offer,
    make_offer,
    negotiated_media,
)
from media_gateway.sdp.session import SdpError, SessionDescription

# SIPp's built-in uac scenario (sipp -sn uac), as sent on the wire.
SIPP_UAC = (
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

# baresip 1.x/3.x with opus, G.722 and G.711 enabled.
BARESIP = (
    b"v=0\r\n"
    b"o=- 1597536902 2873640713 IN IP4 192.168.1.20\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.168.1.20\r\n"
    b"t=0 0\r\n"
    b"a=tool:baresip 3.10.1\r\n"
    b"m=audio 10094 RTP/AVP 96 9 0 8 101\r\n"
    b"b=AS:128\r\n"
    b"a=rtpmap:96 opus/48000/2\r\n"
    b"a=fmtp:96 stereo=1;sprop-stereo=1\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=rtcp-rsize\r\n"
    b"a=ssrc:1284749210 cname:6f2c1d0b-5e7a-4f6c-9d4e-0a1b2c3d4e5f\r\n"
    b"a=sendrecv\r\n"
    b"a=label:1\r\n"
    b"a=ptime:20\r\n"
)

# A browser-like offer over plain RTP/AVP (as a SIP.js/Janus gateway relays it): many codecs,
# telephone-event at 48 kHz and 8 kHz, PCMA before PCMU, a video stream, LF-only line ends.
CHROME_LIKE = (
    b"v=0\n"
    b"o=- 4611731400430051336 2 IN IP4 127.0.0.1\n"
    b"s=-\n"
    b"t=0 0\n"
    b"a=group:BUNDLE 0 1\n"
    b"a=msid-semantic: WMS stream\n"
    b"m=audio 50000 RTP/AVP 111 63 9 8 0 13 110 126\n"
    b"c=IN IP4 198.51.100.7\n"
    b"a=rtcp:9 IN IP4 0.0.0.0\n"
    b"a=mid:0\n"
    b"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\n"
    b"a=sendrecv\n"
    b"a=rtcp-mux\n"
    b"a=rtpmap:111 opus/48000/2\n"
    b"a=rtcp-fb:111 transport-cc\n"
    b"a=fmtp:111 minptime=10;useinbandfec=1\n"
    b"a=rtpmap:63 red/48000/2\n"
    b"a=fmtp:63 111/111\n"
    b"a=rtpmap:9 G722/8000\n"
    b"a=rtpmap:8 PCMA/8000\n"
    b"a=rtpmap:0 PCMU/8000\n"
    b"a=rtpmap:13 CN/8000\n"
    b"a=rtpmap:110 telephone-event/48000\n"
    b"a=rtpmap:126 telephone-event/8000\n"
    b"m=video 50002 RTP/AVP 96 97\n"
    b"c=IN IP4 198.51.100.7\n"
    b"a=rtpmap:96 VP8/90000\n"
    b"a=rtpmap:97 rtx/90000\n"
    b"a=fmtp:97 apt=96\n"
)


def lines(sd: SessionDescription) -> list[str]:
    return sd.to_bytes().decode().split("\r\n")


def test_sipp_offer_answered_with_pcmu() -> None:
    offer = SessionDescription.parse(SIPP_UAC)
    assert offer.origin.version == 2353687637 and offer.connection is not None
    answer = answer_offer(offer, local_ip="192.0.2.1", local_port=20000)
    text = lines(answer)
    assert text[0] == "v=0"
    assert "c=IN IP4 192.0.2.1" in text
    assert "m=audio 20000 RTP/AVP 0" in text
    assert "a=rtpmap:0 PCMU/8000" in text
    assert "a=sendrecv" in text
    params = negotiated_media(offer, answer, local_is_offerer=False)
    assert params.remote_ip == "127.0.0.1" and params.remote_port == 6000
    assert (params.payload_type, params.codec, params.dtmf_pt) == (0, "PCMU", None)
    assert params.direction == "sendrecv" and params.ptime == 20


def test_baresip_offer_keeps_offerer_order_and_dtmf_pt() -> None:
    offer = SessionDescription.parse(BARESIP)
    answer = answer_offer(offer, local_ip="192.0.2.1", local_port=20002)
    (m,) = answer.media
    assert m.formats == ["0", "101"]
    assert m.attribute_values("rtpmap") == ["0 PCMU/8000", "101 telephone-event/8000"]
    assert m.attribute("fmtp") == "101 0-16"
    params = negotiated_media(offer, answer, local_is_offerer=False)
    assert params.remote_ip == "192.168.1.20" and params.remote_port == 10094
    assert (params.codec, params.dtmf_pt) == ("PCMU", 101)
    local = answer_offer(offer, local_ip="192.0.2.1", local_port=1, supported=("PCMA", "PCMU"))
    assert local.media[0].formats[0] == "0"  # offerer's order by default
    local = answer_offer(
        offer, local_ip="192.0.2.1", local_port=1, supported=("PCMA", "PCMU"), prefer="local"
    )
    assert local.media[0].formats[0] == "8"


def test_chrome_like_offer_picks_pcma_8k_dtmf_and_rejects_video() -> None:
    offer = SessionDescription.parse(CHROME_LIKE)
    assert offer.connection is None and [m.media for m in offer.media] == ["audio", "video"]
    answer = answer_offer(offer, local_ip="192.0.2.1", local_port=30000, telephone_event=True)
    audio, video = answer.media
    assert audio.formats == ["8", "126"] and audio.port == 30000
    assert video.port == 0 and video.media == "video"
    params = negotiated_media(offer, answer, local_is_offerer=False)
    assert (params.remote_ip, params.remote_port) == ("198.51.100.7", 50000)
    assert (params.codec, params.payload_type, params.dtmf_pt) == ("PCMA", 8, 126)
    reparsed = SessionDescription.parse(answer.to_bytes())
    assert len(reparsed.media) == 2 and reparsed.media[1].port == 0


def test_without_telephone_event() -> None:
    offer = SessionDescription.parse(BARESIP)
    answer = answer_offer(offer, local_ip="192.0.2.1", local_port=1, telephone_event=False)
    assert answer.media[0].formats == ["0"]


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
        ("sendrecv", "sendrecv"),
    ],
)
def test_direction_is_mirrored_for_hold(offered: str, answered: str) -> None:
    body = SIPP_UAC + f"a={offered}\r\n".encode()
    offer = SessionDescription.parse(body)
    answer = answer_offer(offer, local_ip="192.0.2.1", local_port=1)
    assert answer.media[0].direction == answered
    assert negotiated_media(offer, answer, local_is_offerer=False).direction == offered


def test_session_level_direction_and_rfc2543_hold() -> None:
    body = SIPP_UAC.replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n")
    answer = answer_offer(SessionDescription.parse(body), local_ip="192.0.2.1", local_port=1)
    assert answer.media[0].direction == "recvonly"
    old_hold = SIPP_UAC.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0")
    answer = answer_offer(SessionDescription.parse(old_hold), local_ip="192.0.2.1", local_port=1)
    assert answer.media[0].direction == "recvonly"


@pytest.mark.parametrize(
    "body",
    [
        SIPP_UAC.replace(b"RTP/AVP 0", b"RTP/AVP 18").replace(b"0 PCMU", b"18 G729"),
        SIPP_UAC.replace(b"m=audio 6000", b"m=audio 0"),
        SIPP_UAC.replace(b"m=audio", b"m=video"),
        SIPP_UAC.replace(b"RTP/AVP", b"UDP/TLS/RTP/SAVPF"),
        SIPP_UAC.replace(b"PCMU/8000", b"PCMU/16000"),
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",
    ],
)
def test_no_common_codec(body: bytes) -> None:
    with pytest.raises(NoCommonCodec):
        answer_offer(SessionDescription.parse(body), local_ip="192.0.2.1", local_port=1)


def test_dynamic_pcmu_and_static_without_rtpmap() -> None:
    body = SIPP_UAC.replace(b"RTP/AVP 0", b"RTP/AVP 8").replace(b"a=rtpmap:0 PCMU/8000\r\n", b"")
    answer = answer_offer(SessionDescription.parse(body), local_ip="192.0.2.1", local_port=1)
    assert answer.media[0].formats == ["8"]
    assert "a=rtpmap:8 PCMA/8000" in lines(answer)


def test_make_offer_and_answer_from_peer() -> None:
    offer = make_offer(local_ip="192.0.2.1", local_port=40000, direction="sendonly", version=3)
    text = lines(offer)
    assert "m=audio 40000 RTP/AVP 0 8 101" in text
    assert "a=rtpmap:101 telephone-event/8000" in text and "a=fmtp:101 0-16" in text
    assert "a=sendonly" in text and "a=ptime:20" in text
    assert offer.origin.version == 3
    peer_answer = SessionDescription.parse(
        b"v=0\r\no=peer 9 9 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\n"
        b"m=audio 7078 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        b"a=recvonly\r\na=ptime:30\r\n"
    )
    params = negotiated_media(offer, peer_answer, local_is_offerer=True)
    assert (params.remote_ip, params.remote_port) == ("203.0.113.9", 7078)
    assert (params.codec, params.payload_type, params.dtmf_pt) == ("PCMA", 8, 101)
    assert params.ptime == 30 and params.direction == "recvonly"
    with pytest.raises(ValueError):
        make_offer(local_ip="192.0.2.1", local_port=1, direction="sideways")


def test_ipv6_addresses() -> None:
    offer = make_offer(local_ip="2001:db8::1", local_port=4000)
    assert "c=IN IP6 2001:db8::1" in lines(offer)
    assert SessionDescription.parse(offer.to_bytes()).connection is not None


def test_rejected_answer_stream_raises_in_negotiation() -> None:
    offer = make_offer(local_ip="192.0.2.1", local_port=4000)
    rejected = SessionDescription.parse(
        b"v=0\r\no=p 1 1 IN IP4 203.0.113.9\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
    )
    with pytest.raises(NoCommonCodec):
        negotiated_media(offer, rejected, local_is_offerer=True)


def test_local_session_version_grows_only_on_change() -> None:
    session = LocalSession(session_id="777")
    first = session.stamp(make_offer(local_ip="192.0.2.1", local_port=4000))
    assert (first.origin.session_id, first.origin.version) == ("777", 0)
    same = session.stamp(make_offer(local_ip="192.0.2.1", local_port=4000))
    assert same.origin.version == 0
    hold = session.stamp(make_offer(local_ip="192.0.2.1", local_port=4000, direction="sendonly"))
    assert hold.origin.version == 1
    resume = session.stamp(make_offer(local_ip="192.0.2.1", local_port=4000))
    assert resume.origin.version == 2 and "o=hotline 777 2 IN IP4 192.0.2.1" in lines(resume)


@pytest.mark.parametrize("sample", [SIPP_UAC, BARESIP, CHROME_LIKE])
def test_roundtrip_is_stable(sample: bytes) -> None:
    once = SessionDescription.parse(sample).to_bytes()
    assert SessionDescription.parse(once).to_bytes() == once
    if b"\r\n" in sample:
        assert once == sample


def test_serialisation_follows_rfc4566_order() -> None:
    body = (
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=x\r\ni=info\r\nu=http://x\r\ne=a@b\r\n"
        b"c=IN IP4 1.2.3.4/127\r\nb=CT:64\r\nt=0 0\r\nr=7d 1h 0 25h\r\nk=prompt\r\n"
        b"a=recvonly\r\nm=audio 5 RTP/AVP 0\r\ni=voice\r\nb=AS:64\r\na=x-unknown:1\r\n"
        b"z=unknown-here\r\n"
    )
    sd = SessionDescription.parse(body)
    assert "".join(line[0] for line in lines(sd) if line) == "vosiuecbtrkamibza"
    assert sd.connection is not None and sd.connection.address == "1.2.3.4"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "v=0"),
        (b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n", "v=0"),
        (b"v=0\r\ns=-\r\n", "o="),
        (b"v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n", "version"),
        (b"v=0\r\no=- 1 1 IN IP4\r\n", "6 fields"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nthis is not sdp\r\n", "line 3"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n", "port"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", "port"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5\r\n", "m="),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 0\r\n", "connection"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n", "c="),
    ],
)
def test_malformed_sdp_names_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        SessionDescription.parse(body)


def test_sdp_error_is_a_value_error_and_garbage_never_escapes() -> None:
    assert issubclass(SdpError, ValueError)
    for junk in (b"\xff\xfe\x00", b"v=0\r\n\x00=\x00", b"v=0\r\no=" + b"a " * 5000):
        with pytest.raises(SdpError):
            SessionDescription.parse(junk)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(SIPP_UAC.split(b"\r\n") + BARESIP.split(b"\r\n")), max_size=20),
    st.binary(max_size=40),
)
def test_any_input_parses_or_raises_sdp_error(parts: list[bytes], noise: bytes) -> None:
    body = b"\r\n".join(parts) + noise
    try:
        sd = SessionDescription.parse(body)
    except SdpError:
        return
    assert SessionDescription.parse(sd.to_bytes()).to_bytes() == sd.to_bytes()
    with contextlib.suppress(NoCommonCodec):
        answer_offer(sd, local_ip="192.0.2.1", local_port=1)
