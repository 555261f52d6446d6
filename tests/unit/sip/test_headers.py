"""Structured header parsing: Via, name-addr, CSeq, params, Contact lists (RFC 3261 §20)."""

from __future__ import annotations

import pytest

from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import (
    NameAddr,
    Via,
    format_hostport,
    format_params,
    is_token,
    parse_contact_list,
    parse_cseq,
    parse_hostport,
    parse_name_addr,
    parse_params,
    parse_via,
    quote_string,
    read_quoted_string,
    top_via,
)
from media_gateway.sip.message import Headers

# --- params -------------------------------------------------------------------------------


def test_parse_params_flags_values_and_case() -> None:
    assert parse_params(";Branch=z9hG4bK1;LR;q = 0.5 ; x= y") == {
        "branch": "z9hG4bK1",
        "lr": None,
        "q": "0.5",
        "x": "y",
    }


def test_parse_params_empty_text() -> None:
    assert parse_params("") == {}
    assert parse_params("   ") == {}


def test_parse_params_quoted_value_unquoted() -> None:
    assert parse_params(';a="x;y, z";b="q\\"uote"') == {"a": "x;y, z", "b": 'q"uote'}


def test_parse_params_first_occurrence_wins() -> None:
    assert parse_params(";tag=1;tag=2") == {"tag": "1"}


@pytest.mark.parametrize(
    "text",
    [";;", ";a=b;", "a=b", ";a b=c", ";a=b c", ';a="open', ';a="x"junk', ";a=<b>", ";=v"],
)
def test_parse_params_rejects_bad_input(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_params(text)


def test_format_params_quotes_when_needed() -> None:
    assert format_params({"branch": "z9hG4bK1", "lr": None}) == ";branch=z9hG4bK1;lr"
    assert format_params({"received": "2001:db8::1"}) == ";received=2001:db8::1"
    assert format_params({"a": "x y", "b": "", "c": 'q"'}) == ';a="x y";b="";c="q\\""'


def test_format_then_parse_round_trip() -> None:
    params: dict[str, str | None] = {"a": "x y;z", "b": None, "c": "tok", "d": "\\"}
    assert parse_params(format_params(params)) == params


def test_quoted_string_helpers() -> None:
    assert read_quoted_string('"a\\"b" rest', 0) == ('a"b', 6)
    assert read_quoted_string('x"plain"', 1) == ("plain", 8)
    assert quote_string('a"b\\') == '"a\\"b\\\\"'
    with pytest.raises(SipParseError):
        read_quoted_string('"never closed\\"', 0)
    with pytest.raises(SipParseError):
        read_quoted_string("no quote", 0)


def test_is_token() -> None:
    assert is_token("!interesting-Method0123456789_*+`.%indeed'~")
    assert not is_token("")
    assert not is_token("a b")
    assert not is_token("a:b")


# --- hostport -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", ("example.com", None)),
        ("example.com:5060", ("example.com", 5060)),
        ("192.0.2.1 : 5070", ("192.0.2.1", 5070)),
        ("[::1]", ("::1", None)),
        ("[2001:db8::1]:5061", ("2001:db8::1", 5061)),
        ("_sip.host", ("_sip.host", None)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize(
    "text", ["", ":5060", "host:", "host:99999", "host:50a", "[::1", "[zz::1]", "a b", "[::1]x"]
)
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_hostport(text)


def test_format_hostport_brackets_ipv6() -> None:
    assert format_hostport("::1", 5060) == "[::1]:5060"
    assert format_hostport("example.com", None) == "example.com"


# --- Via ----------------------------------------------------------------------------------


def test_parse_via_basic() -> None:
    via = parse_via("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport")
    assert via == Via(
        transport="UDP",
        host="pc33.atlanta.com",
        port=5066,
        params={"branch": "z9hG4bK776asdhds", "rport": None},
    )
    assert via.branch == "z9hG4bK776asdhds"
    assert via.has_rport
    assert via.rport is None
    assert via.received is None


def test_parse_via_received_and_rport_values() -> None:
    via = parse_via("SIP/2.0/tcp h;branch=z9hG4bKx;received=192.0.2.9;rport=5071")
    assert via.transport == "TCP"
    assert via.port is None
    assert via.received == "192.0.2.9"
    assert via.rport == 5071
    assert via.has_rport


def test_parse_via_lws_everywhere() -> None:
    # RFC 4475 §3.1.1.1 (wsinv), after unfolding.
    via = parse_via("SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239")
    assert via.transport == "UDP"
    assert via.host == "192.168.255.111"
    assert via.branch == "z9hG4bK30239"


def test_parse_via_ipv6() -> None:
    via = parse_via("SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKa;received=2001:db8::7")
    assert via.host == "2001:db8::9"
    assert via.port == 5060
    assert via.received == "2001:db8::7"
    assert via.to_str() == "SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKa;received=2001:db8::7"


def test_parse_via_websocket_and_unknown_transport() -> None:
    assert parse_via("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKx").transport == "WSS"
    assert parse_via("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKa").transport == "UNKNOWN"


def test_via_to_str_round_trip() -> None:
    via = Via(transport="UDP", host="10.0.0.1", port=5060, params={"branch": "z9hG4bK1"})
    via.params["rport"] = "5060"
    via.params["received"] = "1.2.3.4"
    text = via.to_str()
    assert text == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5060;received=1.2.3.4"
    assert parse_via(text) == via
    assert str(via) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0 host",
        "SIP/3.0/UDP host",
        "HTTP/2.0/UDP host",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host;;",
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b",
        "SIP/2.0/UDP host;rport=abc",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/U;DP host",
    ],
)
def test_parse_via_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


def test_top_via_uses_first_list_element() -> None:
    headers = Headers([("v", "SIP/2.0/TCP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2")])
    assert top_via(headers).host == "a"
    with pytest.raises(SipParseError):
        top_via(Headers())


# --- name-addr ----------------------------------------------------------------------------


def test_parse_name_addr_quoted_display() -> None:
    na = parse_name_addr('"Bob \\"B\\"" <sip:bob@biloxi.com>;tag=a6c85cf')
    assert na == NameAddr(display='Bob "B"', uri="sip:bob@biloxi.com", params={"tag": "a6c85cf"})
    assert na.tag == "a6c85cf"


def test_parse_name_addr_token_display_and_no_lws() -> None:
    assert parse_name_addr("Bob Smith <sip:b@x>").display == "Bob Smith"
    na = parse_name_addr("caller<sip:caller@example.com>;tag=323")
    assert na.display == "caller"
    assert na.uri == "sip:caller@example.com"


def test_parse_name_addr_no_display() -> None:
    na = parse_name_addr("<sip:b@x;transport=tcp>;expires=60")
    assert na.display is None
    assert na.uri == "sip:b@x;transport=tcp"
    assert na.params == {"expires": "60"}


def test_parse_name_addr_addr_spec_params_belong_to_header() -> None:
    # RFC 3261 §20.10: after an addr-spec, ";..." are header params, not URI params.
    na = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam;tag=1")
    assert na.uri == "sip:+19725552222@gw1.example.net"
    assert na.params == {"unknownparam": None, "tag": "1"}


def test_parse_name_addr_other_schemes_and_ipv6() -> None:
    assert parse_name_addr("isbn:2983792873").uri == "isbn:2983792873"
    assert parse_name_addr("<sip:[::1]:5060>").uri == "sip:[::1]:5060"


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"Mr. J. User <sip:j.user@example.com>',
        '"Watson, Thomas" < sip:t.watson@example.org >',
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "<sip:b@x",
        "<>",
        "<b@x>",
        "just words",
        '"Joe" <sip:joe@example.org>;;;;',
        '"quoted" sip:no-brackets@x',
    ],
)
def test_parse_name_addr_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(text)


def test_name_addr_to_str_and_with_tag() -> None:
    na = parse_name_addr("sip:alice@atlanta.com")
    tagged = na.with_tag("1928301774")
    assert na.tag is None  # the original is untouched
    assert tagged.to_str() == "<sip:alice@atlanta.com>;tag=1928301774"
    named = NameAddr(display='A "quote"', uri="sip:a@b", params={})
    assert str(named) == '"A \\"quote\\"" <sip:a@b>'
    assert parse_name_addr(named.to_str()) == named


# --- CSeq ---------------------------------------------------------------------------------


def test_parse_cseq() -> None:
    assert parse_cseq("314159 INVITE") == (314159, "INVITE")
    assert parse_cseq("0009\t INVITE") == (9, "INVITE")
    assert parse_cseq("0 ACK") == (0, "ACK")
    assert parse_cseq(str(2**31 - 1) + " BYE") == (2**31 - 1, "BYE")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "INVITE",
        "1",
        "-1 INVITE",
        "1 2 INVITE",
        "x INVITE",
        f"{2**31} INVITE",
        "36893488147419103232 REGISTER",
        "9" * 5000 + " INVITE",
        "1 IN:VITE",
        "١٢ INVITE",
    ],
)
def test_parse_cseq_rejects(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_cseq(text)
    assert info.value.status_hint == 400


# --- Contact ------------------------------------------------------------------------------


def test_parse_contact_list_splits_and_keeps_params() -> None:
    contacts = parse_contact_list(
        ['"A, B" <sip:a@x>;q=0.7, <sip:b@y>;expires=0', "sip:c@z;unknownparam"]
    )
    assert contacts != "*"
    assert [c.uri for c in contacts] == ["sip:a@x", "sip:b@y", "sip:c@z"]
    assert contacts[0].display == "A, B"
    assert contacts[2].params == {"unknownparam": None}


def test_parse_contact_list_star() -> None:
    assert parse_contact_list(["*"]) == "*"
    assert parse_contact_list([]) == []
    with pytest.raises(SipParseError):
        parse_contact_list(["*", "<sip:a@b>"])
