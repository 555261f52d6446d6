"""RFC 4475 torture messages through the parser: one table row per file, then what each means.

Outcomes (see shared/rfc4475/INDEX.md):

* ``ACCEPT``: the parser returns the message and nothing more is expected of other layers
  beyond processing it normally.
* ``REJECT``: the parser raises ``SipParseError`` with the given status hint. ``salvage`` says
  whether ``salvage_headers`` can still rebuild Via/From/To/Call-ID/CSeq for that reply (False
  means the message is dropped: a response, or a request missing what a reply needs).
* ``TU``: syntactically valid, so the parser returns it, but a later layer must answer as the RFC
  says; ``layer`` names which one and ``status`` is what it sends (``None``: drop/ignore).

No sockets here; the end-to-end answers are checked by tests/interop/test_rfc4475_netns.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import (
    parse_contact_list,
    parse_cseq,
    parse_name_addr,
    parse_via,
    top_via,
)
from media_gateway.sip.message import SipRequest, SipResponse
from media_gateway.sip.parser import StreamFramer, parse_message, salvage_headers
from media_gateway.sip.uri import parse_uri

RFC4475 = Path(__file__).resolve().parents[4] / "shared" / "rfc4475"
if not RFC4475.is_dir():
    RFC4475 = Path("/work/shared/rfc4475")

ACCEPT, REJECT, TU = "accept", "reject", "tu"


@dataclass(frozen=True)
class Case:
    section: str
    outcome: str
    status: int | None = None
    salvage: bool | None = None
    layer: str = "parser"


CASES: dict[str, Case] = {
    # §3.1.1 valid messages.
    "wsinv": Case("3.1.1.1", ACCEPT),
    "intmeth": Case("3.1.1.2", TU, 501, layer="TU: unknown method, 501 with Allow"),
    "esc01": Case("3.1.1.3", ACCEPT),
    "escnull": Case("3.1.1.4", ACCEPT),
    "esc02": Case("3.1.1.5", TU, 501, layer="TU: RE%47IST%45R is not REGISTER, 501"),
    "lwsdisp": Case("3.1.1.6", ACCEPT),
    "longreq": Case("3.1.1.7", ACCEPT),
    "dblreq": Case("3.1.1.8", ACCEPT),
    "semiuri": Case("3.1.1.9", ACCEPT),
    "transports": Case("3.1.1.10", ACCEPT),
    "mpart01": Case("3.1.1.11", ACCEPT),
    "unreason": Case("3.1.1.12", ACCEPT),
    "noreason": Case("3.1.1.13", ACCEPT),
    # §3.1.2 invalid messages.
    "badinv01": Case("3.1.2.1", REJECT, 400, salvage=True),
    "clerr": Case("3.1.2.2", REJECT, 400, salvage=True),
    "ncl": Case("3.1.2.3", REJECT, 400, salvage=True),
    "scalar02": Case("3.1.2.4", REJECT, 400, salvage=True),
    "scalarlg": Case("3.1.2.5", REJECT, 400, salvage=True, layer="endpoint drops a response"),
    "quotbal": Case("3.1.2.6", REJECT, 400, salvage=True),
    "ltgtruri": Case("3.1.2.7", REJECT, 400, salvage=True),
    "lwsruri": Case("3.1.2.8", REJECT, 400, salvage=True),
    "lwsstart": Case("3.1.2.9", REJECT, 400, salvage=True, layer="parser: strict on SP"),
    "trws": Case("3.1.2.10", REJECT, 400, salvage=True, layer="parser: strict on SP"),
    "escruri": Case(
        "3.1.2.11", TU, None, layer="TU: accepted; URI headers ignored, never made headers"
    ),
    "baddate": Case("3.1.2.12", TU, None, layer="TU: Date is never used, so it is ignored"),
    "regbadct": Case("3.1.2.13", REJECT, 400, salvage=True),
    "badaspec": Case("3.1.2.14", REJECT, 400, salvage=True),
    "baddn": Case("3.1.2.15", REJECT, 400, salvage=True),
    "badvers": Case("3.1.2.16", REJECT, 505, salvage=True),
    "mismatch01": Case("3.1.2.17", REJECT, 400, salvage=True),
    "mismatch02": Case("3.1.2.18", REJECT, 501, salvage=True),
    "bigcode": Case("3.1.2.19", REJECT, 400, salvage=True, layer="endpoint drops a response"),
    # §3.2 transaction identifier.
    "badbranch": Case(
        "3.2.1", TU, None, layer="transaction: branch is the bare cookie, RFC 2543 matching"
    ),
    # §3.3 application semantics.
    "insuf": Case("3.3.1", REJECT, 400, salvage=False, layer="endpoint: no reply possible"),
    "unkscm": Case("3.3.2", TU, 416, layer="TU: parse_uri(Request-URI) hints 416"),
    "novelsc": Case("3.3.3", TU, 416, layer="TU: parse_uri(Request-URI) hints 416"),
    "unksm2": Case("3.3.4", TU, 400, layer="registrar: To is not a SIP AOR"),
    "bext01": Case("3.3.5", TU, 420, layer="TU: Require not supported, 420 + Unsupported"),
    "invut": Case("3.3.6", TU, 415, layer="TU: unknown Content-Type, 415 + Accept"),
    "regaut01": Case("3.3.7", TU, 401, layer="registrar: re-challenge in a known scheme"),
    "multi01": Case("3.3.8", REJECT, 400, salvage=True),
    "mcl01": Case("3.3.9", REJECT, 400, salvage=True),
    "bcast": Case("3.3.10", TU, None, layer="endpoint: response to nothing, dropped"),
    "zeromf": Case("3.3.11", TU, 200, layer="UAS answers normally; B2BUA never forwards"),
    "cparam01": Case("3.3.12", ACCEPT),
    "cparam02": Case("3.3.13", ACCEPT),
    "regescrt": Case("3.3.14", ACCEPT),
    "sdp01": Case("3.3.15", TU, 406, layer="TU: Accept excludes application/sdp"),
    # §3.4 backward compatibility.
    "inv2543": Case("3.4.1", ACCEPT),
}


def load(name: str) -> bytes:
    return (RFC4475 / f"{name}.dat").read_bytes()


def parsed(name: str) -> SipRequest | SipResponse:
    return parse_message(load(name))


def request(name: str) -> SipRequest:
    msg = parsed(name)
    assert isinstance(msg, SipRequest)
    return msg


# --- the table ----------------------------------------------------------------------------


def test_table_covers_every_file() -> None:
    files = {p.stem for p in RFC4475.glob("*.dat")}
    assert len(files) == 49
    assert files == set(CASES)


def test_files_are_pristine() -> None:
    sums = (RFC4475 / "SHA256SUMS").read_text().split("\n")
    checked = 0
    for line in sums:
        if not line.strip():
            continue
        digest, name = line.split()
        assert hashlib.sha256((RFC4475 / name).read_bytes()).hexdigest() == digest, name
        checked += 1
    assert checked == 49


@pytest.mark.parametrize("name", sorted(CASES))
def test_outcome(name: str) -> None:
    case = CASES[name]
    data = load(name)
    if case.outcome == REJECT:
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.status_hint == case.status
        headers = salvage_headers(data)
        assert (headers is not None) == case.salvage
        if headers is not None:
            # Enough to build the reply: the top Via parses, CSeq has a method.
            parse_via(headers.get_list("Via")[0])
            assert len((headers.get("CSeq") or "").split()) == 2
    else:
        msg = parse_message(data)
        assert isinstance(msg, SipRequest | SipResponse)
        # A parsed message survives serialisation (which moves Content-Length last).
        again = parse_message(msg.to_bytes())
        assert again.start_line() == msg.start_line()
        assert again.body == msg.body
        assert [h for h in again.headers if h[0] != "Content-Length"] == [
            h for h in msg.headers if h[0] != "Content-Length"
        ]


@pytest.mark.parametrize("name", sorted(CASES))
def test_stream_framer_never_raises(name: str) -> None:
    data = load(name)
    for chunk_size in (1, 7, len(data)):
        framer = StreamFramer()
        out: list[object] = []
        for i in range(0, len(data), chunk_size):
            out.extend(framer.feed(data[i : i + chunk_size]))
        assert all(isinstance(m, SipRequest | SipResponse | SipParseError) for m in out)
        if CASES[name].outcome != REJECT and name not in ("inv2543", "baddn", "dblreq"):
            # Content-Length is present and right, so the stream yields the same message.
            assert out == [parse_message(data)]


def test_stream_framer_splits_dblreq() -> None:
    # On a stream the "extra" octets of §3.1.1.8 are simply the next message.
    out = StreamFramer().feed(load("dblreq"))
    assert [m.method for m in out if isinstance(m, SipRequest)] == ["REGISTER", "INVITE"]


def test_stream_framer_rejects_inv2543_without_content_length() -> None:
    (err, *_) = StreamFramer().feed(load("inv2543"))
    assert isinstance(err, SipParseError)
    assert "Content-Length is required" in str(err)


# --- §3.1.1 valid messages: what they mean ------------------------------------------------


def test_wsinv_whitespace_folding_compact_forms() -> None:
    msg = request("wsinv")
    h = msg.headers
    to = parse_name_addr(h.get("To") or "")
    assert (to.uri, to.tag) == ("sip:vivekg@chair-dnrc.example.com", "1918181833n")
    frm = parse_name_addr(h.get("From") or "")
    assert frm.display == 'J Rosenberg \\"'
    assert (frm.uri, frm.tag) == ("sip:jdrosen@example.com", "98asjd8")
    assert int(h.get("max-forwards") or "") == 68
    assert parse_cseq(h.get("CSeq") or "") == (9, "INVITE")
    vias = [parse_via(v) for v in h.get_list("Via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert h.get("Subject") == ""
    assert h.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert h.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert h.get_list("UnknownHeaderWithUnusualValue") == [";;,,;;,;"]
    contacts = parse_contact_list(h.get_all("Contact"))
    assert contacts != "*"
    (contact,) = contacts
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    route = parse_name_addr(h.get("Route") or "")
    assert parse_uri(route.uri).params == {
        "lr": None,
        "unknownwith": "value",
        "unknown-no-value": None,
    }
    assert len(msg.body) == 150


def test_intmeth_wide_range_of_characters() -> None:
    msg = request("intmeth")
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert parse_cseq(msg.headers.get("CSeq") or "")[1] == msg.method
    to = parse_name_addr(msg.headers.get("To") or "")
    assert to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"  # quoted-pairs, not truncated at NUL
    frm = parse_name_addr(msg.headers.get("From") or "")
    assert frm.display == "token1~` token2'+_ token3*%!.-"
    assert frm.params["fromparam''~+*_!.-%"] == "работающий"
    assert frm.tag == "_token~1'+`*%!-."
    assert msg.headers.get("Call-ID") == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert top_via(msg.headers).branch == "z9hG4bK-.!%66*_+`'~"
    ruri = parse_uri(msg.uri)
    assert ruri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert ruri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"


def test_esc01_escapes_decoded_once_where_the_grammar_allows() -> None:
    msg = request("esc01")
    assert parse_uri(msg.uri).user == "sips:user@example.com"
    assert parse_uri(parse_name_addr(msg.headers.get("To") or "").uri).user == "user"
    assert parse_uri(parse_name_addr(msg.headers.get("From") or "").uri).user == "I have spaces"
    contacts = parse_contact_list(msg.headers.get_all("Contact"))
    assert contacts != "*"
    contact = parse_uri(contacts[0].uri)
    assert contact.user == "caller"
    assert contact.params == {"lr": None, "name": "value%41"}


def test_escnull_keeps_nul_bytes() -> None:
    msg = request("escnull")
    to = parse_uri(parse_name_addr(msg.headers.get("To") or "").uri)
    assert to.user == "null-\x00-null"
    contacts = parse_contact_list(msg.headers.get_all("Contact"))
    assert contacts != "*"
    assert [parse_uri(c.uri).user for c in contacts] == ["\x00", "\x00\x00"]


def test_esc02_percent_is_not_an_escape_outside_uris() -> None:
    msg = request("esc02")
    assert msg.method == "RE%47IST%45R"
    assert msg.method != "REGISTER"
    assert parse_name_addr(msg.headers.get("To") or "").display == "%Z%45"
    assert len(msg.headers.get_list("Contact")) == 2  # C%6Fntact is an unknown header
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert top_via(msg.headers).branch == "z9hG4bK209%fzsnel234"


def test_lwsdisp_display_name_without_space() -> None:
    frm = parse_name_addr(request("lwsdisp").headers.get("From") or "")
    assert (frm.display, frm.uri, frm.tag) == ("caller", "sip:caller@example.com", "323")


def test_longreq_long_values() -> None:
    msg = request("longreq")
    h = msg.headers
    to = parse_name_addr(h.get("To") or "")
    assert to.display is not None
    assert to.display.startswith("I have a user name of extreme")
    assert to.display.endswith("proportion")
    to_uri = parse_uri(to.uri)
    assert to_uri.port == 6000
    assert to_uri.params["longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamename"
                         "namenamenamenamenamenamenamenamenamename"] == "shortvalue"  # fmt: skip
    frm = parse_name_addr(h.get("From") or "")
    assert frm.tag is not None
    assert len(frm.tag) > 150
    assert len(h.get("Call-ID") or "") > 100
    vias = [parse_via(v) for v in h.get_list("Via")]
    assert len(vias) == 34
    assert vias[-1].host == "host.example.com"
    assert vias[-1].received == "192.0.2.5"
    assert len(msg.body) == 150


def test_dblreq_trailing_octets_ignored() -> None:
    msg = request("dblreq")
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert msg.headers.get("Call-ID") == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert b"INVITE" not in msg.to_bytes()


def test_semiuri_semicolon_in_user() -> None:
    msg = request("semiuri")
    ruri = parse_uri(msg.uri)
    assert (ruri.user, ruri.host, ruri.params) == ("user;par=u@example.net", "example.com", {})
    assert msg.headers.get_list("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_extension_transports() -> None:
    vias = [parse_via(v) for v in request("transports").headers.get_list("Via")]
    assert [v.transport for v in vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_body_is_bytes() -> None:
    msg = request("mpart01")
    assert len(msg.body) == 553
    assert b"\n" in msg.body.replace(b"\r\n", b"")  # bare LFs kept
    assert (msg.headers.get("Content-Type") or "").startswith("multipart/mixed")
    assert top_via(msg.headers).has_rport


def test_unreason_utf8_reason_phrase() -> None:
    msg = parsed("unreason")
    assert isinstance(msg, SipResponse)
    assert msg.status == 200
    assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(msg.body) == 154


def test_noreason_empty_reason_phrase() -> None:
    msg = parsed("noreason")
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (100, "")


# --- §3.1.2 invalid messages: why they fail -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("badinv01", "bad Via header: empty parameter"),
        ("clerr", "Content-Length 9999 is larger than the"),
        ("ncl", "Content-Length '-999' is not a non-negative integer"),
        ("scalar02", "CSeq number 36893488147419103232 is not below 2**31"),
        ("scalarlg", "CSeq number 9292394834772304023312 is not below 2**31"),
        ("quotbal", "bad To header: unterminated quoted string"),
        ("ltgtruri", "Request-URI '<sip:user@example.com>' is not an absolute URI"),
        ("lwsruri", "is not 'Method SP Request-URI SP SIP-Version'"),
        ("lwsstart", "is not 'Method SP Request-URI SP SIP-Version'"),
        ("trws", "is not 'Method SP Request-URI SP SIP-Version'"),
        ("regbadct", "bad Contact header"),
        ("badaspec", "bad To header: URI ' sip:t.watson@example.org ' contains ' '"),
        ("baddn", "bad From header: display name 'Bell, Alexander' must be quoted"),
        ("badvers", "unsupported SIP version 'SIP/7.0'"),
        ("mismatch01", "CSeq method INVITE does not match request method OPTIONS"),
        ("mismatch02", "CSeq method INVITE does not match request method NEWMETHOD"),
        ("bigcode", "status code '4294967301' is not three digits"),
        ("insuf", "missing required header(s): From, To, Call-ID"),
        ("multi01", "more than one CSeq header"),
        ("mcl01", "2 Content-Length headers"),
    ],
)
def test_rejection_reasons(name: str, fragment: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    assert fragment in str(info.value)


def test_badinv01_salvage_drops_empty_via_params() -> None:
    headers = salvage_headers(load("badinv01"))
    assert headers is not None
    assert headers.get_all("Via") == ["SIP/2.0/UDP 192.0.2.15"]


def test_badvers_salvage_answers_in_sip_2_0() -> None:
    headers = salvage_headers(load("badvers"))
    assert headers is not None
    assert headers.get("Via") == "SIP/2.0/UDP c.example.com;branch=z9hG4bKkdjuw"


def test_quotbal_salvage_keeps_to_as_sent() -> None:
    headers = salvage_headers(load("quotbal"))
    assert headers is not None
    assert headers.get("To") == '"Mr. J. User <sip:j.user@example.com>'


def test_multi01_salvage_takes_first_values() -> None:
    headers = salvage_headers(load("multi01"))
    assert headers is not None
    assert headers.get("CSeq") == "5 INVITE"
    assert headers.get("Call-ID") == "multi01.98asdh@192.0.2.1"


def test_clerr_on_a_stream_waits_for_more_bytes() -> None:
    framer = StreamFramer()
    data = load("clerr")
    assert framer.feed(data) == []
    assert framer.buffered == len(data)
    assert not framer.broken


@pytest.mark.parametrize("name", ["ncl", "mcl01"])
def test_framing_errors_on_a_stream_close_it(name: str) -> None:
    framer = StreamFramer()
    (err,) = framer.feed(load(name))
    assert isinstance(err, SipParseError)
    assert err.status_hint == 400
    assert framer.broken


def test_escruri_accepted_with_uri_headers_separate() -> None:
    msg = request("escruri")
    ruri = parse_uri(msg.uri)
    assert ruri.headers == {"Route": "<sip:example.com>"}
    assert msg.headers.get("Route") is None  # never turned into a real header


def test_baddate_date_kept_verbatim() -> None:
    assert request("baddate").headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


# --- §3.2 and §3.3: parsed, left to the transaction layer or TU ---------------------------


def test_badbranch_bare_magic_cookie() -> None:
    assert top_via(request("badbranch").headers).branch == "z9hG4bK"


@pytest.mark.parametrize("name", ["unkscm", "novelsc"])
def test_unknown_request_uri_scheme_hints_416(name: str) -> None:
    msg = request(name)
    with pytest.raises(SipParseError) as info:
        parse_uri(msg.uri)
    assert info.value.status_hint == 416


def test_unksm2_unknown_schemes_in_headers() -> None:
    h = request("unksm2").headers
    to = parse_name_addr(h.get("To") or "")
    assert to.uri == "isbn:2983792873"
    assert parse_name_addr(h.get("From") or "").uri == "http://www.example.com"
    contacts = parse_contact_list(h.get_all("Contact"))
    assert contacts != "*"
    assert contacts[0].uri == "name:John_Smith"
    with pytest.raises(SipParseError) as info:
        parse_uri(to.uri)
    assert info.value.status_hint == 416  # a registrar turns "AOR is not SIP" into 400


def test_bext01_option_tags() -> None:
    h = request("bext01").headers
    assert h.get_list("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert h.get_list("Proxy-Require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]


def test_invut_unknown_content_type() -> None:
    msg = request("invut")
    assert msg.headers.get("Content-Type") == "application/unknownformat"
    assert len(msg.body) == 40


def test_regaut01_unknown_auth_scheme_kept() -> None:
    h = request("regaut01").headers
    assert h.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"


def test_bcast_broadcast_via_parsed() -> None:
    msg = parsed("bcast")
    assert isinstance(msg, SipResponse)
    assert [parse_via(v).host for v in msg.headers.get_list("Via")] == [
        "192.0.2.198",
        "255.255.255.255",
    ]


def test_zeromf_max_forwards_zero() -> None:
    assert request("zeromf").headers.get("Max-Forwards") == "0"


def test_cparam01_contact_param_not_uri_param() -> None:
    contacts = parse_contact_list(request("cparam01").headers.get_all("Contact"))
    assert contacts != "*"
    (contact,) = contacts
    assert contact.uri == "sip:+19725552222@gw1.example.net"
    assert contact.params == {"unknownparam": None}
    assert parse_uri(contact.uri).params == {}


def test_cparam02_uri_param() -> None:
    contacts = parse_contact_list(request("cparam02").headers.get_all("Contact"))
    assert contacts != "*"
    (contact,) = contacts
    assert contact.params == {}
    uri = parse_uri(contact.uri)
    assert uri.params == {"unknownparam": None}
    assert str(uri) == "sip:+19725552222@gw1.example.net;unknownparam"


def test_regescrt_escaped_route_stays_in_contact_uri() -> None:
    contacts = parse_contact_list(request("regescrt").headers.get_all("Contact"))
    assert contacts != "*"
    uri = parse_uri(contacts[0].uri)
    assert uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_sdp01_accept_without_sdp() -> None:
    assert request("sdp01").headers.get_list("Accept") == ["text/nobodyKnowsThis"]


def test_multi01_and_insuf_are_parser_rejections() -> None:
    # RFC 4475 puts these under §3.3 (semantics), but the transaction layer cannot even be
    # keyed without exactly one Call-ID/CSeq/From/To, so the parser answers 400 itself.
    assert salvage_headers(load("insuf")) is None  # no From/To/Call-ID: no reply possible
    assert salvage_headers(load("multi01")) is not None


# --- §3.4 RFC 2543 syntax -----------------------------------------------------------------


def test_inv2543_legacy_request() -> None:
    msg = request("inv2543")
    via = top_via(msg.headers)
    assert via.branch is None
    assert parse_name_addr(msg.headers.get("From") or "").tag is None
    assert "Content-Length" not in msg.headers
    assert "Max-Forwards" not in msg.headers
    assert msg.body.startswith(b"v=0\r\n")
    assert msg.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
