"""SDES (RFC 4568): the ``a=crypto`` attribute, and the SRTP policy of offer/answer."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media_gateway.sdp.crypto import (
    SUITES,
    CryptoAttribute,
    CryptoError,
    SrtpKey,
    choose_crypto,
    offer_crypto,
)
from media_gateway.sdp.offer_answer import (
    NoCommonCodec,
    SrtpRefused,
    answer_offer,
    make_offer,
    negotiated_media,
)
from media_gateway.sdp.session import SessionDescription

K80 = bytes(range(30))
K32 = bytes(range(100, 130))
OURS = {"AES_CM_128_HMAC_SHA1_80": bytes(range(50, 80)), "AES_CM_128_HMAC_SHA1_32": K32}
B64 = base64.b64encode(K80).decode()


# -- the attribute ----------------------------------------------------------------------------


def test_rfc4568_example_parses_with_lifetime_and_mki() -> None:
    # RFC 4568 §4's example (its key is 40 base64 characters: 30 bytes)
    attr = CryptoAttribute.parse(
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
    )
    assert attr.tag == 1
    assert attr.suite == "AES_CM_128_HMAC_SHA1_80"
    assert len(attr.key) == 30
    assert attr.keys[0].lifetime == 2**20
    assert attr.keys[0].mki == (1, 4)
    assert CryptoAttribute.parse(attr.to_value()) == attr
    # well formed, but an MKI is something we cannot do: said plainly
    assert "MKI" in (attr.unsupported() or "")


def test_our_attribute_round_trips_and_is_usable() -> None:
    attr = CryptoAttribute.inline(7, "AES_CM_128_HMAC_SHA1_32", K32)
    assert attr.to_value() == f"7 AES_CM_128_HMAC_SHA1_32 inline:{base64.b64encode(K32).decode()}"
    assert CryptoAttribute.parse(attr.to_value()) == attr
    assert attr.unsupported() is None


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^31", None),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64} WSH=128", None),
        (f"1 AES_256_CM_HMAC_SHA1_80 inline:{B64}", "crypto suite AES_256_CM_HMAC_SHA1_80"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^20", "re-keying"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|1:1", "MKI"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|1:1;inline:{B64}|2:1", "several master keys"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64} UNENCRYPTED_SRTP", "UNENCRYPTED_SRTP"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64} KDR=1", "KDR=1"),
    ],
)
def test_what_we_cannot_use_is_named(value: str, why: str | None) -> None:
    attr = CryptoAttribute.parse(value)
    reason = attr.unsupported()
    if why is None:
        assert reason is None
    else:
        assert reason is not None and why in reason


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "needs a tag, a crypto suite and key parameters"),
        ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag, a crypto suite and key parameters"),
        (f"x AES_CM_128_HMAC_SHA1_80 inline:{B64}", "tag must be 1 to 9 digits"),
        (f"1234567890 AES_CM_128_HMAC_SHA1_80 inline:{B64}", "tag must be 1 to 9 digits"),
        (f"1 AES-CM inline:{B64}", "is not a suite name"),
        (f"1 AES_CM_128_HMAC_SHA1_80 uri:{B64}", "key method must be inline"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", "not base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:QUJD", "needs 30 bytes of master key and salt"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^x", "lifetime must be a number or 2^n"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^99", "out of range"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|0", "must not be 0"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|1:0", "MKI length must be 1 to 128"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|1:x", "MKI must be <value>:<length>"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|1:1|2^31", "before the MKI"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|1|2|3", "too many '|' fields"),
    ],
)
def test_malformed_attributes_give_a_clear_error(value: str, message: str) -> None:
    with pytest.raises(CryptoError, match=None) as info:
        CryptoAttribute.parse(value)
    assert message in str(info.value)


@given(st.text(max_size=200))
def test_any_text_parses_or_gives_a_crypto_error(text: str) -> None:
    try:
        attr = CryptoAttribute.parse(text)
    except CryptoError:
        return
    assert CryptoAttribute.parse(attr.to_value()) == attr


_tokens = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_=|:;/+ ", max_size=60)


@given(st.from_regex(r"[0-9]{1,9}", fullmatch=True), _tokens, _tokens)
def test_near_miss_values_parse_or_give_a_crypto_error(tag: str, suite: str, rest: str) -> None:
    try:
        attr = CryptoAttribute.parse(f"{tag} {suite} inline:{rest}")
    except CryptoError:
        return
    assert attr.tag == int(tag) and CryptoAttribute.parse(attr.to_value()) == attr


_keys = st.builds(
    SrtpKey,
    key=st.binary(min_size=30, max_size=30),
    lifetime=st.none() | st.integers(1, 2**64),
    mki=st.none() | st.tuples(st.integers(0, 2**32), st.integers(1, 128)),
)


@given(
    st.integers(0, 999_999_999),
    st.sampled_from(list(SUITES)),
    st.lists(_keys, min_size=1, max_size=3),
    st.lists(st.sampled_from(["WSH=64", "KDR=0", "UNENCRYPTED_SRTCP"]), max_size=2),
)
def test_generated_attributes_round_trip(
    tag: int, suite: str, keys: list[SrtpKey], params: list[str]
) -> None:
    attr = CryptoAttribute(tag, suite, tuple(keys), tuple(params))
    assert CryptoAttribute.parse(attr.to_value()) == attr


# -- offer/answer under a policy ----------------------------------------------------------------


def _offer(proto: str, crypto: list[str]) -> SessionDescription:
    lines = [
        "v=0",
        "o=phone 1 1 IN IP4 192.0.2.10",
        "s=-",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        f"m=audio 40000 {proto} 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        *(f"a=crypto:{c}" for c in crypto),
        "a=sendrecv",
    ]
    return SessionDescription.parse("\r\n".join(lines) + "\r\n")


SAVP: tuple[str, list[str]] = ("RTP/SAVP", [f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}"])
PLAIN: tuple[str, list[str]] = ("RTP/AVP", [])
BEST_EFFORT: tuple[str, list[str]] = ("RTP/AVP", [f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}"])
"""What phones in "SRTP if possible" mode send (baresip ``mediaenc=srtp``)."""


@pytest.mark.parametrize(
    ("policy", "offer", "outcome"),
    [
        ("off", PLAIN, "RTP/AVP"),
        ("off", BEST_EFFORT, "RTP/AVP"),
        ("off", SAVP, "SRTP is off here: the offer asks for RTP/SAVP"),
        ("optional", PLAIN, "RTP/AVP"),
        ("optional", BEST_EFFORT, "RTP/AVP+crypto"),
        ("optional", SAVP, "RTP/SAVP+crypto"),
        ("required", PLAIN, "SRTP is required: the offer is plain RTP (RTP/AVP)"),
        ("required", BEST_EFFORT, "RTP/AVP+crypto"),
        ("required", SAVP, "RTP/SAVP+crypto"),
    ],
)
def test_the_policy_decides_what_is_answered(
    policy: str, offer: tuple[str, list[str]], outcome: str
) -> None:
    sd = _offer(*offer)
    try:
        answer = answer_offer(
            sd,
            local_ip="127.0.0.1",
            local_port=20000,
            srtp=policy,  # type: ignore[arg-type]
            srtp_keys=OURS,
        )
    except SrtpRefused as exc:
        assert str(exc) == outcome
        return
    m = answer.media[0]
    crypto = m.attribute_values("crypto")
    assert m.proto + ("+crypto" if crypto else "") == outcome
    params = negotiated_media(sd, answer, local_is_offerer=False)
    if crypto:
        assert params.srtp is not None
        assert params.srtp.remote_key == K80  # the phone's key checks what it sends us
        assert params.srtp.local_key == OURS["AES_CM_128_HMAC_SHA1_80"]
        assert CryptoAttribute.parse(crypto[0]).tag == 1  # the offered tag, answered
    else:
        assert params.srtp is None


def test_the_first_usable_offered_suite_is_answered_and_others_are_skipped() -> None:
    sd = _offer(
        "RTP/SAVP",
        [
            f"1 AEAD_AES_256_GCM inline:{base64.b64encode(bytes(44)).decode()}",
            f"2 AES_CM_128_HMAC_SHA1_80 inline:{B64}|1:1",
            f"3 AES_CM_128_HMAC_SHA1_32 inline:{base64.b64encode(K32).decode()}",
            f"4 AES_CM_128_HMAC_SHA1_80 inline:{B64}",
        ],
    )
    answer = answer_offer(
        sd, local_ip="127.0.0.1", local_port=20000, srtp="required", srtp_keys=OURS
    )
    (value,) = answer.media[0].attribute_values("crypto")
    assert value.startswith("3 AES_CM_128_HMAC_SHA1_32 ")
    params = negotiated_media(sd, answer, local_is_offerer=False)
    assert params.srtp is not None and params.srtp.suite == "AES_CM_128_HMAC_SHA1_32"
    assert params.srtp.remote_key == K32


def test_an_srtp_offer_we_cannot_use_is_refused_with_the_reason() -> None:
    sd = _offer("RTP/SAVP", [f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^20"])
    with pytest.raises(SrtpRefused, match="re-keying"):
        answer_offer(sd, local_ip="127.0.0.1", local_port=20000, srtp="optional", srtp_keys=OURS)
    broken = _offer("RTP/SAVP", ["1 AES_CM_128_HMAC_SHA1_80 inline:QUJD"])
    with pytest.raises(SrtpRefused, match="needs 30 bytes"):
        answer_offer(
            broken, local_ip="127.0.0.1", local_port=20000, srtp="required", srtp_keys=OURS
        )
    assert choose_crypto(broken.media[0])[0] is None


def test_a_codec_failure_is_still_no_common_codec() -> None:
    sd = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n"
    )
    with pytest.raises(NoCommonCodec) as info:
        answer_offer(sd, local_ip="127.0.0.1", local_port=20000, srtp="optional", srtp_keys=OURS)
    assert not isinstance(info.value, SrtpRefused)


def test_our_srtp_offer_and_the_peers_answer_give_crossed_keys() -> None:
    ours = {s: bytes([i]) * 30 for i, s in enumerate(SUITES, start=1)}
    offer = make_offer(local_ip="127.0.0.1", local_port=20000, crypto=offer_crypto(ours))
    m = offer.media[0]
    assert m.proto == "RTP/SAVP"
    assert [CryptoAttribute.parse(v).suite for v in m.attribute_values("crypto")] == list(SUITES)
    theirs = {s: bytes([9]) * 30 for s in SUITES}
    answer = answer_offer(
        SessionDescription.parse(offer.to_bytes()),
        local_ip="192.0.2.5",
        local_port=40000,
        srtp="required",
        srtp_keys=theirs,
    )
    mine = negotiated_media(offer, answer, local_is_offerer=True)
    peer = negotiated_media(offer, answer, local_is_offerer=False)
    assert mine.srtp is not None and peer.srtp is not None
    assert mine.srtp.suite == "AES_CM_128_HMAC_SHA1_80"
    assert mine.srtp.local_key == peer.srtp.remote_key == ours["AES_CM_128_HMAC_SHA1_80"]
    assert mine.srtp.remote_key == peer.srtp.local_key == theirs["AES_CM_128_HMAC_SHA1_80"]


def test_an_answer_without_keys_to_our_srtp_offer_is_refused() -> None:
    offer = make_offer(local_ip="127.0.0.1", local_port=20000, crypto=offer_crypto(OURS))
    text = offer.to_bytes().decode()
    plain_answer = SessionDescription.parse(
        "\r\n".join(line for line in text.split("\r\n") if not line.startswith("a=crypto"))
    )
    with pytest.raises(SrtpRefused, match="without a usable a=crypto"):
        negotiated_media(offer, plain_answer, local_is_offerer=True)
    wrong_tag = SessionDescription.parse(
        text.replace("a=crypto:1 ", "a=crypto:9 ").split("a=crypto:2")[0] + "a=sendrecv\r\n"
    )
    with pytest.raises(SrtpRefused, match="matches no offered one"):
        negotiated_media(offer, wrong_tag, local_is_offerer=True)
