"""Property tests for the SIP parser: round trips, and no exception but SipParseError.

* A generated valid message survives ``to_bytes`` -> ``parse_message`` unchanged.
* The same message written the liberal way (compact names, odd case, LWS around ``:``, line
  folding, leading CRLFs) parses to the same model.
* Random bytes and mutated valid messages give a message or ``SipParseError`` (never another
  exception) from ``parse_message``, ``salvage_headers`` and ``StreamFramer`` fed in chunks.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import quote_string
from media_gateway.sip.message import (
    COMPACT_FORMS,
    Headers,
    SipRequest,
    SipResponse,
    canonical_name,
)
from media_gateway.sip.parser import StreamFramer, parse_message, salvage_headers

SETTINGS = settings(max_examples=200, deadline=None)
# Header text: anything but CR/LF and lone surrogates.
TEXT_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n")

TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(alphabet=TOKEN_ALPHABET, min_size=1, max_size=12)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
VALIDATED = {"Via", "From", "To", "Call-ID", "CSeq", "Content-Length", "Contact"}
FULL_TO_COMPACT = {full: short for short, full in COMPACT_FORMS.items()}

hosts = st.one_of(
    st.builds(lambda a, b: f"{a}.{b}.example", words, words),
    st.builds(lambda *o: ".".join(map(str, o)), *[st.integers(0, 255)] * 4),
    st.sampled_from(["[::1]", "[2001:db8::7]", "[fe80::1:2]"]),
)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
sip_uris = st.builds(
    lambda user, host, port: f"sip:{user}@{host}{port}" if user else f"sip:{host}{port}",
    st.one_of(st.just(""), words),
    hosts,
    ports,
)
display_names = st.one_of(
    st.just(""),
    st.lists(tokens, min_size=1, max_size=3).map(lambda ws: " ".join(ws) + " "),
    st.text(TEXT_CHARS, max_size=15).map(quote_string).map(lambda q: q + " "),
)
name_addrs = st.builds(
    lambda display, uri, tag: f"{display}<{uri}>{tag}",
    display_names,
    sip_uris,
    st.one_of(st.just(""), tokens.map(lambda t: f";tag={t}")),
)
vias = st.builds(
    lambda transport, host, port, branch, rport: (
        f"SIP/2.0/{transport} {host}{port};branch=z9hG4bK{branch}{rport}"
    ),
    st.sampled_from(["UDP", "TCP", "TLS", "WS", "WSS"]),
    hosts,
    ports,
    words,
    st.sampled_from(["", ";rport", ";rport=5060;received=192.0.2.1"]),
)
# Free text for unknown headers: no CR/LF, no surrogates, no LWS at either end.
free_values = st.text(TEXT_CHARS, max_size=40).map(lambda s: s.strip(" \t"))
extra_names = st.one_of(
    st.sampled_from(["Subject", "User-Agent", "Max-Forwards", "Allow", "Supported", "X-Case"]),
    tokens,
).filter(lambda n: canonical_name(n) not in VALIDATED)
methods = st.one_of(st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"]), tokens)


@st.composite
def messages(draw: st.DrawFn) -> SipRequest | SipResponse:
    is_request = draw(st.booleans())
    method = draw(methods)
    required: list[tuple[str, str]] = [
        ("Via", v) for v in draw(st.lists(vias, min_size=1, max_size=3))
    ]
    required += [
        ("From", draw(name_addrs)),
        ("To", draw(name_addrs)),
        ("Call-ID", draw(words) + "@" + draw(words)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    extras = draw(st.lists(st.tuples(extra_names, free_values), max_size=6))
    if draw(st.booleans()):
        extras.append(("Contact", draw(name_addrs)))
    items = draw(st.permutations(required + extras))
    body = draw(st.binary(max_size=120))
    headers = Headers(items)
    if is_request:
        return SipRequest(method=method, uri=draw(sip_uris), headers=headers, body=body)
    reason = draw(free_values)
    return SipResponse(
        status=draw(st.integers(100, 699)), reason=reason, headers=headers, body=body
    )


def with_content_length(msg: SipRequest | SipResponse) -> Headers:
    expected = Headers([(n, v) for n, v in msg.headers if n != "Content-Length"])
    expected.add("Content-Length", str(len(msg.body)))
    return expected


def same(parsed: SipRequest | SipResponse, msg: SipRequest | SipResponse) -> None:
    assert type(parsed) is type(msg)
    assert parsed.start_line() == msg.start_line()
    assert parsed.body == msg.body
    assert parsed.headers == with_content_length(msg)


@SETTINGS
@given(messages())
def test_to_bytes_parse_round_trip(msg: SipRequest | SipResponse) -> None:
    same(parse_message(msg.to_bytes()), msg)


def fold(value: str, data: st.DataObject) -> str:
    """Fold at single spaces between non-blank characters (folding is one SP, §7.3.1)."""
    draw = data.draw
    spots = [
        i
        for i in range(1, len(value) - 1)
        if value[i] == " " and value[i - 1] not in " \t" and value[i + 1] not in " \t"
    ]
    if not spots or not draw(st.booleans()):
        return value
    chosen = sorted(draw(st.sets(st.sampled_from(spots), max_size=3)))
    out, last = [], 0
    for i in chosen:
        out.append(value[last:i])
        out.append("\r\n" + draw(st.sampled_from([" ", "\t", "   "])))
        last = i + 1
    out.append(value[last:])
    return "".join(out)


def liberal_name(name: str, data: st.DataObject) -> str:
    draw = data.draw
    compact = FULL_TO_COMPACT.get(name)
    if compact is not None and draw(st.booleans()):
        return compact.upper() if draw(st.booleans()) else compact
    if canonical_name(name.upper()) != name or canonical_name(name.lower()) != name:
        return name  # message.Headers compares unknown names as written
    return draw(st.sampled_from([name, name.lower(), name.upper(), name.swapcase()]))


@SETTINGS
@given(messages(), st.data())
def test_liberal_wire_form_parses_to_same_model(
    msg: SipRequest | SipResponse, data: st.DataObject
) -> None:
    draw = data.draw
    lines = [msg.start_line()]
    for name, value in with_content_length(msg):
        before = draw(st.sampled_from(["", " ", "\t", "  "]))
        after = draw(st.sampled_from(["", " ", "  ", "\t"]))
        if value and draw(st.booleans()):
            after = "\r\n "  # the whole value on a continuation line
        lines.append(f"{liberal_name(name, data)}{before}:{after}{fold(value, data)}")
    leading = draw(st.sampled_from(["", "\r\n", "\r\n\r\n"]))
    wire = (leading + "\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + msg.body
    same(parse_message(wire), msg)
    # The stream framer sees the same thing, however it is chunked.
    framer = StreamFramer()
    cuts = sorted(draw(st.sets(st.integers(0, len(wire)), max_size=8)))
    out: list[SipRequest | SipResponse | SipParseError] = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        out.extend(framer.feed(wire[a:b]))
    assert len(out) == 1
    assert not isinstance(out[0], SipParseError)
    same(out[0], msg)


def must_not_crash(data: bytes) -> None:
    try:
        result = parse_message(data)
    except SipParseError:
        pass
    else:
        assert isinstance(result, SipRequest | SipResponse)
    salvaged = salvage_headers(data)
    assert salvaged is None or isinstance(salvaged, Headers)


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    must_not_crash(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(messages()).to_bytes())
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup", "truncate", "crlf"]))
        pos = draw(st.integers(0, max(0, len(base) - 1)))
        if op == "flip" and base:
            base[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            base[pos:pos] = draw(
                st.one_of(
                    st.binary(min_size=1, max_size=8),
                    st.sampled_from([b":", b";", b",", b"\r\n", b" ", b'"', b"<", b">", b"\r\n "]),
                )
            )
        elif op == "delete":
            del base[pos : pos + draw(st.integers(1, 20))]
        elif op == "dup":
            base[pos:pos] = base[pos : pos + draw(st.integers(1, 40))]
        elif op == "truncate":
            del base[pos:]
        else:
            base[pos:pos] = b"\r\n\r\n"
    return bytes(base)


@SETTINGS
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    must_not_crash(data)


@SETTINGS
@given(st.lists(st.one_of(mutated(), st.binary(max_size=60), st.just(b"\r\n\r\n")), max_size=4),
       st.data())  # fmt: skip
def test_stream_framer_random_chunks(parts: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(parts)
    framer = StreamFramer(max_header_bytes=512, max_body_bytes=256)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=12)))
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        for item in framer.feed(stream[a:b]):
            assert isinstance(item, SipRequest | SipResponse | SipParseError)
        assert framer.buffered <= 512 + 4 + 256 + len(stream[a:b])
    if framer.broken:
        assert framer.feed(b"INVITE") == []


@SETTINGS
@given(st.lists(messages(), min_size=1, max_size=4), st.data())
def test_stream_framer_splits_concatenated_messages(
    msgs: list[SipRequest | SipResponse], data: st.DataObject
) -> None:
    wire = b"".join(m.to_bytes() + data.draw(st.sampled_from([b"", b"\r\n\r\n"])) for m in msgs)
    framer = StreamFramer()
    cuts = sorted(data.draw(st.sets(st.integers(0, len(wire)), max_size=10)))
    out: list[SipRequest | SipResponse | SipParseError] = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        out.extend(framer.feed(wire[a:b]))
    assert len(out) == len(msgs)
    for got, msg in zip(out, msgs, strict=True):
        assert not isinstance(got, SipParseError)
        same(got, msg)
    assert framer.buffered == 0
