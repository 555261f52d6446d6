"""Datagram parsing, salvage and stream framing (RFC 3261 §7, §18.3; RFC 5626 keep-alives)."""

from __future__ import annotations

import pytest

from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import parse_via
from media_gateway.sip.message import Headers, SipRequest, SipResponse
from media_gateway.sip.parser import (
    StreamFramer,
    is_keepalive,
    parse_message,
    salvage_headers,
)

BASE_HEADERS = [
    "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.com>",
    "From: Alice <sip:alice@atlanta.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.com",
    "CSeq: 314159 INVITE",
]


def build(
    start: str = "INVITE sip:bob@biloxi.com SIP/2.0",
    headers: list[str] | None = None,
    body: bytes = b"",
    *,
    content_length: bool = True,
) -> bytes:
    lines = [start, *(BASE_HEADERS if headers is None else headers)]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def replace(name: str, value: str | None) -> list[str]:
    """BASE_HEADERS with the header ``name`` replaced (or dropped when value is None)."""
    out = [h for h in BASE_HEADERS if not h.startswith(name + ":")]
    if value is not None:
        out.append(f"{name}: {value}")
    return out


def parse_error(data: bytes) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    return info.value


# --- requests and responses ---------------------------------------------------------------


def test_parse_request() -> None:
    msg = parse_message(build(body=b"v=0\r\n"))
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:bob@biloxi.com"
    assert msg.version == "SIP/2.0"
    assert msg.body == b"v=0\r\n"
    assert msg.headers.get("call-id") == "a84b4c76e66710@pc33.atlanta.com"
    assert msg.headers.get("Content-Length") == "5"
    assert msg.headers.names()[0] == "Via"


def test_parse_response_and_reason() -> None:
    msg = parse_message(build("SIP/2.0 180 Ringing Loudly", body=b""))
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (180, "Ringing Loudly")


@pytest.mark.parametrize(("line", "reason"), [("SIP/2.0 100 ", ""), ("SIP/2.0 100", "")])
def test_empty_reason_phrase(line: str, reason: str) -> None:
    msg = parse_message(build(line))
    assert isinstance(msg, SipResponse)
    assert msg.reason == reason


def test_round_trip_through_to_bytes() -> None:
    msg = parse_message(build(body=b"hello"))
    assert parse_message(msg.to_bytes()) == msg


def test_leading_crlfs_ignored() -> None:
    msg = parse_message(b"\r\n\r\n\r\n" + build())
    assert isinstance(msg, SipRequest)


def test_compact_forms_and_case_insensitive_names() -> None:
    data = build(
        headers=[
            "v: SIP/2.0/UDP h;branch=z9hG4bK1",
            "t: <sip:bob@biloxi.com>",
            "F: <sip:alice@atlanta.com>;tag=1",
            "i: abc",
            "cSEQ: 1 INVITE",
            "m: <sip:alice@h>",
            "k: 100rel",
            "c: application/sdp",
        ],
        body=b"x",
        content_length=False,
    ).replace(b"\r\n\r\n", b"\r\nl: 1\r\n\r\n")
    msg = parse_message(data)
    assert msg.headers.names() == [
        "Via", "To", "From", "Call-ID", "CSeq", "Contact", "Supported", "Content-Type",
        "Content-Length",
    ]  # fmt: skip
    assert msg.headers.get("content-length") == "1"
    assert msg.body == b"x"


def test_lws_around_colon_folding_and_empty_values() -> None:
    data = build(
        headers=[
            *BASE_HEADERS,
            "Subject   :   hello  ",
            "X-Folded: first part",
            "  second part",
            "\tthird",
            "Supported:",
            "Route:",
            " <sip:p1.example.com;lr>",
        ]
    )
    msg = parse_message(data)
    assert msg.headers.get("Subject") == "hello"
    assert msg.headers.get("X-Folded") == "first part second part third"
    assert msg.headers.get("Supported") == ""
    assert msg.headers.get("Route") == "<sip:p1.example.com;lr>"


def test_repeated_and_comma_joined_headers() -> None:
    data = build(
        headers=[
            "Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2",
            "Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK3",
            *BASE_HEADERS[1:],
            "Allow: INVITE, ACK",
            "Allow: BYE",
        ]
    )
    msg = parse_message(data)
    assert [parse_via(v).host for v in msg.headers.get_list("Via")] == ["a", "b", "2001:db8::1"]
    assert msg.headers.get_list("Allow") == ["INVITE", "ACK", "BYE"]


def test_max_forwards_is_not_required() -> None:
    msg = parse_message(build(headers=replace("Max-Forwards", None)))
    assert "Max-Forwards" not in msg.headers


def test_invalid_utf8_survives_round_trip() -> None:
    data = build(headers=[*BASE_HEADERS, "X-Bytes: caf\xe9"]).replace(b"caf\xc3\xa9", b"caf\xe9")
    msg = parse_message(data)
    assert msg.to_bytes() == data
    assert parse_message(msg.to_bytes()) == msg


def test_utf8_values_decoded() -> None:
    msg = parse_message(build(headers=[*BASE_HEADERS, "Subject: né 你好"]))
    assert msg.headers.get("Subject") == "né 你好"


# --- bodies and Content-Length ------------------------------------------------------------


def test_content_length_shorter_than_datagram_truncates() -> None:
    data = build(body=b"abc") + b"trailing junk"
    assert parse_message(data).body == b"abc"


def test_content_length_zero_ignores_extra_bytes() -> None:
    data = build(body=b"") + b"INVITE sip:x SIP/2.0\r\n\r\n"
    assert parse_message(data).body == b""


def test_content_length_absent_body_is_rest() -> None:
    data = build(body=b"", content_length=False) + b"v=0\r\n\nbinary\x00"
    assert parse_message(data).body == b"v=0\r\n\nbinary\x00"


def test_content_length_larger_than_body() -> None:
    data = build(headers=[*BASE_HEADERS, "Content-Length: 10"], content_length=False) + b"abc"
    exc = parse_error(data)
    assert exc.status_hint == 400
    assert str(exc) == "Content-Length 10 is larger than the 3-byte body"


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "", "0x10", "١"])
def test_content_length_not_a_number(value: str) -> None:
    data = build(headers=[*BASE_HEADERS, f"Content-Length: {value}"], content_length=False)
    exc = parse_error(data)
    assert exc.status_hint == 400
    assert "Content-Length" in str(exc)


def test_content_length_leading_zeros_and_compact() -> None:
    data = build(headers=[*BASE_HEADERS, "l: 0003"], content_length=False) + b"abcd"
    assert parse_message(data).body == b"abc"


def test_two_content_lengths_rejected() -> None:
    data = build(headers=[*BASE_HEADERS, "Content-Length: 0"], body=b"")
    assert str(parse_error(data)) == "2 Content-Length headers (framing is ambiguous)"


def test_datagram_without_blank_line_is_headers_only() -> None:
    data = build(content_length=False)[:-2]
    msg = parse_message(data)
    assert msg.body == b""
    no_crlf = data[:-2]
    assert parse_message(no_crlf).headers.get("CSeq") == "314159 INVITE"
    with_cl = (b"\r\n".join([*data.split(b"\r\n")[:-1], b"Content-Length: 4"])) + b"\r\n"
    assert "no blank line" in str(parse_error(with_cl))


def test_empty_datagram() -> None:
    assert str(parse_error(b"")) == "empty message"
    assert str(parse_error(b"\r\n\r\n")) == "empty message"
    assert is_keepalive(b"\r\n\r\n")
    assert not is_keepalive(b"")
    assert not is_keepalive(build())


# --- start line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "hint"),
    [
        ("INVITE sip:bob@biloxi.com SIP/3.0", 505),
        ("SIP/1.0 200 OK", 505),
        ("INVITE sip:bob@biloxi.com HTTP/1.1", 400),
        ("INVITE sip:bob@biloxi.com", 400),
        ("INVITE  sip:bob@biloxi.com SIP/2.0", 400),
        ("INVITE sip:bob@biloxi.com SIP/2.0 ", 400),
        ("INVITE sip:bob@biloxi.com; lr SIP/2.0", 400),
        ("INVITE <sip:bob@biloxi.com> SIP/2.0", 400),
        ("INVITE bob@biloxi.com SIP/2.0", 400),
        ("IN:VITE sip:bob@biloxi.com SIP/2.0", 400),
        ("SIP/2.0 99 Too Low", 400),
        ("SIP/2.0 700 Too High", 400),
        ("SIP/2.0 2000 OK", 400),
        ("SIP/2.0 20x OK", 400),
        ("SIP/2.0 4294967301 better not break the receiver", 400),
    ],
)
def test_bad_start_lines(start: str, hint: int) -> None:
    assert parse_error(build(start)).status_hint == hint


def test_version_error_wins_over_header_errors() -> None:
    data = build("OPTIONS sip:bob@biloxi.com SIP/7.0", headers=["Broken header line"])
    assert parse_error(data).status_hint == 505


def test_request_line_error_message() -> None:
    exc = parse_error(build("INVITE  sip:bob@biloxi.com SIP/2.0"))
    assert "is not 'Method SP Request-URI SP SIP-Version'" in str(exc)


def test_lower_case_version_accepted() -> None:
    msg = parse_message(build("INVITE sip:bob@biloxi.com sip/2.0"))
    assert msg.version == "SIP/2.0"


def test_unknown_scheme_in_request_uri_parses() -> None:
    msg = parse_message(build("INVITE nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0"))
    assert isinstance(msg, SipRequest)
    assert msg.uri == "nobodyKnowsThisScheme:totallyopaquecontent"


# --- header lines -------------------------------------------------------------------------


def test_header_line_without_colon() -> None:
    data = build(headers=[BASE_HEADERS[0], "NoColonHere", *BASE_HEADERS[1:]])
    assert str(parse_error(data)) == "header line 3 has no colon"


def test_header_name_not_token() -> None:
    data = build(headers=[*BASE_HEADERS, "Bad Name: x"])
    assert "name 'Bad Name' is not a token" in str(parse_error(data))
    data = build(headers=[*BASE_HEADERS, ": x"])
    assert "empty name" in str(parse_error(data))


def test_continuation_without_header() -> None:
    data = build(headers=[" folded", *BASE_HEADERS])
    assert str(parse_error(data)) == "header line 2 continues a line that is no header"


def test_bare_lf_rejected() -> None:
    data = build().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n")
    assert "bare CR or LF" in str(parse_error(data))


# --- required headers ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_required_header(name: str) -> None:
    for start in ("INVITE sip:bob@biloxi.com SIP/2.0", "SIP/2.0 200 OK"):
        exc = parse_error(build(start, replace(name, None)))
        assert str(exc) == f"missing required header(s): {name}"


@pytest.mark.parametrize("name", ["From", "To", "Call-ID", "CSeq"])
def test_duplicate_single_header(name: str) -> None:
    value = next(h for h in BASE_HEADERS if h.startswith(name + ":"))
    exc = parse_error(build(headers=[*BASE_HEADERS, value]))
    assert str(exc) == f"more than one {name} header"


def test_cseq_method_mismatch() -> None:
    exc = parse_error(build("BYE sip:bob@biloxi.com SIP/2.0"))
    assert str(exc) == "CSeq method INVITE does not match request method BYE"
    assert exc.status_hint == 400
    exc = parse_error(build("NEWMETHOD sip:bob@biloxi.com SIP/2.0"))
    assert exc.status_hint == 501


def test_response_cseq_method_is_free() -> None:
    msg = parse_message(build("SIP/2.0 200 OK", replace("CSeq", "2 BYE")))
    assert msg.headers.get("CSeq") == "2 BYE"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CSeq", "99999999999 INVITE", "bad CSeq header"),
        ("CSeq", "INVITE", "bad CSeq header"),
        ("Call-ID", "two words", "Call-ID 'two words' is not a single word"),
        ("Call-ID", "", "Call-ID '' is not a single word"),
        ("From", '"unterminated <sip:a@b>', "bad From header"),
        ("To", "Watson, Thomas <sip:t@example.org>", "bad To header"),
        ("Via", "SIP/2.0/UDP 192.0.2.15;;,;,,", "bad Via header"),
        ("Via", "SIP/2.0/UDP ok;branch=z9hG4bK1, garbage", "bad Via header"),
        ("Contact", "sip:u@example.com?Route=x", "bad Contact header"),
        ("Contact", "*, <sip:a@b>", "bad Contact header"),
    ],
)
def test_bad_structured_header_values(name: str, value: str, fragment: str) -> None:
    exc = parse_error(build(headers=replace(name, value)))
    assert fragment in str(exc)
    assert exc.status_hint == 400


# --- salvage ------------------------------------------------------------------------------


def test_salvage_from_broken_request_line() -> None:
    data = build("INVITE  sip:bob@biloxi.com  SIP/2.0")
    headers = salvage_headers(data)
    assert headers is not None
    assert headers.names() == ["Via", "From", "To", "Call-ID", "CSeq"]
    assert headers.get("CSeq") == "314159 INVITE"


def test_salvage_repairs_empty_via_params_and_keeps_all_vias() -> None:
    data = build(
        headers=[
            "Via: SIP/2.0/UDP 192.0.2.15;;branch=z9hG4bK1;;",
            "Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2",
            *BASE_HEADERS[1:],
            "CSeq: 1 INVITE",
        ]
    )
    headers = salvage_headers(data)
    assert headers is not None
    assert headers.get_all("Via") == [
        "SIP/2.0/UDP 192.0.2.15;branch=z9hG4bK1",
        "SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2",
    ]
    assert headers.get("CSeq") == "314159 INVITE"  # the first of duplicates


def test_salvage_tolerates_lf_and_folding_and_overlarge_cseq() -> None:
    text = (
        "REGISTER sip:x SIP/2.0\n"
        "Via: SIP/7.0/UDP h;branch=z9hG4bK1\n"
        "garbage line\n"
        "  continued garbage\n"
        "From: <sip:a@b>\n"
        "  ;tag=1\n"
        "To: <sip:a@b>\n"
        "Call-ID: c1\n"
        "CSeq: 36893488147419103232 REGISTER\n"
        "\n"
        "Via: SIP/2.0/UDP body-is-not-headers\n"
    )
    headers = salvage_headers(text.encode())
    assert headers is not None
    assert headers.get_all("Via") == ["SIP/2.0/UDP h;branch=z9hG4bK1"]
    assert headers.get("From") == "<sip:a@b> ;tag=1"
    assert headers.get("CSeq") == "36893488147419103232 REGISTER"


@pytest.mark.parametrize(
    "headers",
    [
        replace("Via", None),
        replace("From", None),
        replace("To", ""),
        replace("Call-ID", None),
        replace("Call-ID", "two words"),
        replace("CSeq", "x INVITE"),
        replace("CSeq", "1"),
        replace("Via", "garbage"),
    ],
)
def test_salvage_gives_up(headers: list[str]) -> None:
    assert salvage_headers(build(headers=headers)) is None


def test_salvage_of_nonsense() -> None:
    assert salvage_headers(b"") is None
    assert salvage_headers(b"\xff\xfe\x00garbage") is None


# --- stream framing -----------------------------------------------------------------------


def test_framer_two_messages_in_one_chunk() -> None:
    framer = StreamFramer()
    a = build(body=b"first")
    b = build("SIP/2.0 200 OK", body=b"")
    out = framer.feed(a + b)
    assert [type(m) for m in out] == [SipRequest, SipResponse]
    assert isinstance(out[0], SipRequest)
    assert out[0].body == b"first"
    assert framer.buffered == 0


def test_framer_byte_by_byte() -> None:
    framer = StreamFramer()
    data = b"\r\n\r\n" + build(body=b"abc\r\n\r\ndef") + b"\r\n\r\n" + build(body=b"")
    out: list[SipRequest | SipResponse | SipParseError] = []
    for i in range(len(data)):
        out.extend(framer.feed(data[i : i + 1]))
    assert len(out) == 2
    assert all(isinstance(m, SipRequest) for m in out)
    assert isinstance(out[0], SipRequest)
    assert out[0].body == b"abc\r\n\r\ndef"
    assert framer.keepalive_pings == 2
    assert framer.take_pings() == 2
    assert framer.take_pings() == 0


def test_framer_keepalive_only() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == []
    assert framer.keepalive_pings == 2
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == []
    assert framer.keepalive_pings == 3
    assert framer.buffered == 0


def test_framer_waits_for_body() -> None:
    framer = StreamFramer()
    data = build(body=b"0123456789")
    assert framer.feed(data[:-4]) == []
    assert framer.buffered == len(data) - 4
    (msg,) = framer.feed(data[-4:])
    assert isinstance(msg, SipRequest)
    assert msg.body == b"0123456789"


def test_framer_missing_content_length_is_an_error_not_fatal() -> None:
    framer = StreamFramer()
    out = framer.feed(build(content_length=False) + build())
    assert isinstance(out[0], SipParseError)
    assert str(out[0]) == "Content-Length is required on a stream transport"
    assert isinstance(out[1], SipRequest)
    assert not framer.broken


def test_framer_parse_error_keeps_stream() -> None:
    framer = StreamFramer()
    out = framer.feed(build("INVITE sip:x SIP/3.0") + build())
    assert isinstance(out[0], SipParseError)
    assert out[0].status_hint == 505
    assert isinstance(out[1], SipRequest)
    assert not framer.broken


@pytest.mark.parametrize(
    "extra", ["Content-Length: -999", "Content-Length: abc", "l: 5\r\nContent-Length: 13"]
)
def test_framer_bad_content_length_breaks(extra: str) -> None:
    framer = StreamFramer()
    out = framer.feed(build(headers=[*BASE_HEADERS, extra], content_length=False) + b"body")
    assert len(out) == 1
    assert isinstance(out[0], SipParseError)
    assert out[0].status_hint == 400
    assert framer.broken
    assert framer.feed(build()) == []


def test_framer_agreeing_duplicate_content_length_frames_then_rejects() -> None:
    framer = StreamFramer()
    data = build(headers=[*BASE_HEADERS, "Content-Length: 2"], body=b"ab")
    out = framer.feed(data + build())
    assert isinstance(out[0], SipParseError)
    assert isinstance(out[1], SipRequest)


def test_framer_header_cap() -> None:
    framer = StreamFramer(max_header_bytes=1024)
    out: list[SipRequest | SipResponse | SipParseError] = []
    chunk = b"X-Filler: " + b"a" * 90 + b"\r\n"
    out.extend(framer.feed(b"INVITE sip:x SIP/2.0\r\n"))
    for _ in range(20):
        out.extend(framer.feed(chunk))
    assert len(out) == 1
    assert isinstance(out[0], SipParseError)
    assert out[0].status_hint == 513
    assert framer.broken
    assert framer.buffered == 0


def test_framer_default_header_cap_is_16k() -> None:
    framer = StreamFramer()
    assert framer.feed(b"A" * 16 * 1024) == []
    (err,) = framer.feed(b"A")
    assert isinstance(err, SipParseError)
    assert err.status_hint == 513


def test_framer_long_head_in_one_chunk() -> None:
    framer = StreamFramer(max_header_bytes=100)
    (err,) = framer.feed(build(headers=[*BASE_HEADERS, "X-Long: " + "a" * 200]))
    assert isinstance(err, SipParseError)
    assert err.status_hint == 513


def test_framer_body_cap() -> None:
    framer = StreamFramer()
    data = build(
        headers=[*BASE_HEADERS, f"Content-Length: {1024 * 1024 + 1}"], content_length=False
    )
    (err,) = framer.feed(data)
    assert isinstance(err, SipParseError)
    assert err.status_hint == 513
    assert framer.broken


def test_framer_body_at_cap_accepted() -> None:
    framer = StreamFramer(max_body_bytes=10)
    (msg,) = framer.feed(build(body=b"0123456789"))
    assert isinstance(msg, SipRequest)


def test_framer_headers_helper_types() -> None:
    # The framer yields the same model as parse_message.
    data = build(body=b"xyz")
    (msg,) = StreamFramer().feed(data)
    assert msg == parse_message(data)
    assert isinstance(msg, SipRequest)
    assert isinstance(msg.headers, Headers)
