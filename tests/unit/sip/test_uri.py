"""SIP/SIPS/tel URIs: parsing, escaping, serialising and §19.1.4 comparison."""

from __future__ import annotations

import pytest

from media_gateway.sip.errors import SipParseError
from media_gateway.sip.uri import SipUri, parse_uri, uri_equal


def test_parse_full_sip_uri() -> None:
    uri = parse_uri("sip:alice:secretword@atlanta.com:5070;transport=TCP;lr?subject=project&x=y")
    assert uri == SipUri(
        scheme="sip",
        user="alice",
        password="secretword",
        host="atlanta.com",
        port=5070,
        params={"transport": "TCP", "lr": None},
        headers={"subject": "project", "x": "y"},
    )
    assert uri.transport == "tcp"
    assert uri.hostport == "atlanta.com:5070"


def test_parse_minimal_and_sips() -> None:
    assert parse_uri("sip:example.com") == SipUri("sip", None, None, "example.com")
    uri = parse_uri("SIPS:bob@Biloxi.COM")
    assert uri.scheme == "sips"
    assert uri.host == "Biloxi.COM"


def test_ipv6_host() -> None:
    uri = parse_uri("sip:bob@[2001:db8::10]:5060;maddr=[2001:db8::1]")
    assert uri.host == "2001:db8::10"
    assert uri.port == 5060
    assert uri.params == {"maddr": "[2001:db8::1]"}
    assert str(uri) == "sip:bob@[2001:db8::10]:5060;maddr=[2001:db8::1]"
    assert parse_uri("sip:[::1]").hostport == "[::1]"


def test_escapes_decoded_once() -> None:
    # RFC 4475 §3.1.1.3 (esc01).
    assert parse_uri("sip:sips%3Auser%40example.com@example.net").user == "sips:user@example.com"
    uri = parse_uri("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.user == "caller"
    assert uri.params == {"lr": None, "name": "value%41"}


def test_escaped_nul_is_kept() -> None:
    # RFC 4475 §3.1.1.4 (escnull).
    assert parse_uri("sip:null-%00-null@example.com").user == "null-\x00-null"
    assert parse_uri("sip:%00%00@host5.example.com").user == "\x00\x00"


def test_semicolon_in_user_part() -> None:
    # RFC 4475 §3.1.1.9 (semiuri): ';' inside userinfo is not a parameter delimiter.
    uri = parse_uri("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == {}


def test_unusual_user_and_password() -> None:
    # RFC 4475 §3.1.1.2 (intmeth) Request-URI.
    uri = parse_uri(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com"
    )
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"


def test_escaped_headers_in_uri() -> None:
    # RFC 4475 §3.3.14 (regescrt): the escaped Route header stays in the URI.
    uri = parse_uri("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
    assert uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert uri.scheme == "tel"
    assert uri.user == "+1-201-555-0123"
    assert uri.host == ""
    assert uri.params == {"phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


@pytest.mark.parametrize(
    "text",
    [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
        "http://www.example.com",
        "isbn:2983792873",
        "mailto:a@b",
    ],
)
def test_other_schemes_hint_416(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status_hint == 416


@pytest.mark.parametrize(
    "text",
    [
        "",
        "example.com",
        ":x",
        "sip:",
        "sip:user@",
        "sip:user@example.com; lr",
        "<sip:user@example.com>",
        "sip:a b@example.com",
        "sip:us%ZZer@example.com",
        "sip:host;",
        "sip:host;;lr",
        "sip:host;a=b c",
        "sip:host:port",
        "sip:host?noequals",
        "sip:host?a=1&",
        "sip:us<er@host",
        "tel:",
        "tel:12 34",
        "tel:+1;",
    ],
)
def test_malformed_uris_hint_400(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status_hint == 400


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sip:alice:pw@atlanta.com:5060;transport=udp;lr?a=b&c=d",
        "sip:I%20have%20spaces@example.net",
        "sip:%00@host",
        "sips:[2001:db8::1]:5061;maddr=239.255.255.1;ttl=15",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com",
        "sip:%E2%82%AC@example.com",
        "sip:%FF@example.com",
    ],
)
def test_str_round_trip(text: str) -> None:
    uri = parse_uri(text)
    assert parse_uri(str(uri)) == uri


# RFC 3261 §19.1.4 examples.
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
        ("tel:+1-201-555-0123", "tel:+12015550123"),
    ],
)
def test_uri_equal(a: str, b: str) -> None:
    assert uri_equal(a, b)
    assert uri_equal(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:a@b", "sips:a@b"),
        ("sip:a@b;newparam=5", "sip:a@b;newparam=6"),
        ("sip:a:x@b", "sip:a:y@b"),
        ("tel:+1", "tel:+2"),
    ],
)
def test_uri_not_equal(a: str, b: str) -> None:
    assert not uri_equal(a, b)
    assert not uri_equal(b, a)


def test_uri_equal_accepts_parsed_uris() -> None:
    assert uri_equal(parse_uri("sip:a@b"), "sip:a@B")
