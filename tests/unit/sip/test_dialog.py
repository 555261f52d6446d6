"""RFC 3261 §12 dialog state: tags, route sets, targets, CSeq."""

from __future__ import annotations

import random

from media_gateway.sip.builders import make_response
from media_gateway.sip.dialog import Dialog, tag_of
from media_gateway.sip.message import Headers, SipRequest


def invite() -> SipRequest:
    return SipRequest(
        method="INVITE",
        uri="sip:b@example.com",
        headers=Headers(
            [
                ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa"),
                ("Record-Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"),
                ("From", '"Alice" <sip:a@example.com>;tag=ta'),
                ("To", "<sip:b@example.com>"),
                ("Call-ID", "cid"),
                ("CSeq", "7 INVITE"),
                ("Contact", "<sip:a@10.0.0.1:5060>"),
            ]
        ),
    )


def test_tag_of() -> None:
    assert tag_of("<sip:a@x>;tag=abc") == "abc"
    assert tag_of("<sip:a@x>;TAG=abc;foo") == "abc"
    assert tag_of("sip:a@x;tag=q") == "q"
    assert tag_of("<sip:a@x>") is None and tag_of(None) is None


def test_uas_dialog_keeps_record_route_order() -> None:
    d = Dialog.as_uas(
        invite(),
        local_tag="tb",
        peer=("10.0.0.1", 5060),
        transport="udp",
        connection=None,
        confirmed=True,
    )
    assert d.key == ("cid", "tb", "ta")
    assert d.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert d.remote_target == "sip:a@10.0.0.1:5060" and d.remote_cseq == 7
    bye = d.make_request("BYE", via_base="SIP/2.0/UDP 10.0.0.2:5060", rng=random.Random(1))
    h = bye.headers
    assert bye.uri == "sip:a@10.0.0.1:5060"
    assert h.get_all("Route") == d.route_set
    assert h.get("From") == "<sip:b@example.com>;tag=tb"
    assert h.get("To") == '"Alice" <sip:a@example.com>;tag=ta'
    assert h.get("CSeq") == "1 BYE"


def test_uac_dialog_reverses_record_route_and_uses_contact() -> None:
    inv = invite()
    ok = make_response(inv, 200, to_tag="tb", headers=[("Contact", "<sip:b@10.0.0.2:5062>")])
    d = Dialog.as_uac(inv, ok, peer=("10.0.0.2", 5060), transport="udp", connection=None)
    assert d.key == ("cid", "ta", "tb") and d.confirmed
    assert d.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert d.remote_target == "sip:b@10.0.0.2:5062"
    assert d.next_cseq() == 8


def test_remote_cseq_must_not_go_backwards() -> None:
    d = Dialog.as_uas(
        invite(),
        local_tag="tb",
        peer=("10.0.0.1", 5060),
        transport="udp",
        connection=None,
        confirmed=True,
    )
    assert d.accept_remote_cseq(8)
    assert not d.accept_remote_cseq(3)


def test_make_response_copies_headers_and_record_route() -> None:
    inv = invite()
    r = make_response(inv, 180, to_tag="tb")
    assert r.headers.get("To") == "<sip:b@example.com>;tag=tb"
    assert r.headers.get_list("Record-Route") == inv.headers.get_list("Record-Route")
    trying = make_response(inv, 100, to_tag="tb")
    assert trying.headers.get("To") == "<sip:b@example.com>"  # §8.2.6.2
    assert "Record-Route" not in make_response(inv, 486, to_tag="tb").headers
