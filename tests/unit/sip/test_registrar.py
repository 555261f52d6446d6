"""The registrar (RFC 3261 §10.3): bindings, expiry, wildcard removal, ordering and the
device events the ACD uses to pause agents whose phones went away."""

from __future__ import annotations

from typing import Literal

import pytest

from media_gateway.sip.headers import NameAddr, parse_contact_list
from media_gateway.sip.registrar import DeviceChange, RegisterResult, Registrar

SRC = ("192.0.2.10", 40000)


def contacts(*values: str) -> list[NameAddr] | Literal["*"]:
    return parse_contact_list(list(values))


def reg(
    r: Registrar,
    *values: str,
    expires: int | None = None,
    call_id: str = "c1",
    cseq: int = 1,
    now: float = 0.0,
    user: str = "1001",
    source: tuple[str, int] = SRC,
    transport: str = "udp",
) -> RegisterResult:
    return r.register(
        user,
        contacts(*values) if values else [],
        expires,
        call_id,
        cseq,
        now,
        source=source,
        transport=transport,
    )


def test_register_keeps_contact_and_source_address() -> None:
    r = Registrar()
    result = reg(r, "<sip:1001@10.0.0.5:5062;transport=tcp>", expires=600, transport="tcp")
    assert result.status == 200
    assert result.changes == [DeviceChange("1001", "registered")]
    (b,) = r.contacts("1001", 1.0)
    assert b.contact == "sip:1001@10.0.0.5:5062;transport=tcp"
    assert b.source == SRC and b.transport == "tcp"
    assert b.expires_at == 600.0


def test_default_and_clamped_expiry() -> None:
    r = Registrar(min_expires=60, max_expires=3600, default_expires=1800)
    reg(r, "<sip:a@h1>")
    reg(r, "<sip:b@h2>", expires=99999, cseq=2)
    by_uri = {b.contact: b.expires_at for b in r.contacts("1001", 0.0)}
    assert by_uri == {"sip:a@h1": 1800.0, "sip:b@h2": 3600.0}


def test_interval_too_brief_changes_nothing() -> None:
    r = Registrar(min_expires=60)
    result = reg(r, "<sip:a@h1>", "<sip:b@h2>;expires=30", expires=600)
    assert result.status == 423 and result.min_expires == 60
    assert r.contacts("1001", 0.0) == [] and r.users() == []
    assert reg(r, "<sip:a@h1>", expires=60, cseq=2).status == 200


def test_per_contact_expires_overrides_header() -> None:
    r = Registrar()
    reg(r, "<sip:a@h1>;expires=120", "<sip:b@h2>", expires=900)
    assert {b.contact: b.expires_at for b in r.contacts("1001", 0.0)} == {
        "sip:a@h1": 120.0,
        "sip:b@h2": 900.0,
    }


def test_several_devices_ordered_by_q_then_most_recent() -> None:
    r = Registrar()
    reg(r, "<sip:desk@h1>;q=0.5", expires=600, call_id="desk", now=0.0)
    reg(r, "<sip:soft@h2>;q=0.9", expires=600, call_id="soft", now=1.0)
    reg(r, "<sip:mobile@h3>;q=0.5", expires=600, call_id="mob", now=2.0)
    reg(r, "<sip:bad@h4>;q=high", expires=600, call_id="bad", now=3.0)
    order = [b.contact for b in r.contacts("1001", 5.0)]
    assert order == ["sip:bad@h4", "sip:soft@h2", "sip:mobile@h3", "sip:desk@h1"]


def test_expires_zero_removes_one_binding_and_last_one_reports() -> None:
    r = Registrar()
    reg(r, "<sip:a@h1>", "<sip:b@h2>", expires=600)
    result = reg(r, "<sip:a@h1>", expires=0, cseq=2, now=10.0)
    assert result.status == 200 and result.changes == []
    assert [b.contact for b in result.bindings] == ["sip:b@h2"]
    result = reg(r, "<sip:b@h2>;expires=0", expires=600, cseq=3, now=11.0)
    assert result.bindings == []
    assert result.changes == [DeviceChange("1001", "unregistered")]
    assert r.users() == []


def test_wildcard_removes_all_only_with_expires_zero() -> None:
    r = Registrar()
    reg(r, "<sip:a@h1>", "<sip:b@h2>", expires=600)
    assert reg(r, "*", expires=600, cseq=2).status == 400
    assert reg(r, "*", cseq=3).status == 400
    assert len(r.contacts("1001", 1.0)) == 2
    result = reg(r, "*", expires=0, cseq=4, call_id="other")
    assert result.status == 200 and result.bindings == []
    assert result.changes == [DeviceChange("1001", "unregistered")]


def test_same_call_id_needs_higher_cseq() -> None:
    r = Registrar()
    reg(r, "<sip:a@h1>", expires=600, cseq=5, now=0.0)
    stale = reg(r, "<sip:a@h1>", expires=0, cseq=5, now=1.0)
    older = reg(r, "<sip:a@h1>", expires=0, cseq=4, now=1.0)
    assert stale.status == 500 and older.status == 500
    assert len(r.contacts("1001", 2.0)) == 1
    assert reg(r, "*", expires=0, cseq=3).status == 500
    # A different Call-ID (the phone rebooted) replaces the binding whatever its CSeq.
    assert reg(r, "<sip:a@h1>", expires=900, call_id="c2", cseq=1, now=3.0).status == 200
    (b,) = r.contacts("1001", 3.0)
    assert b.call_id == "c2" and b.expires_at == 903.0


def test_refresh_moves_expiry_and_source() -> None:
    r = Registrar()
    reg(r, "<sip:a@h1>", expires=100, cseq=1, now=0.0)
    result = reg(r, "<sip:a@h1>", expires=100, cseq=2, now=80.0, source=("198.51.100.1", 1234))
    assert result.changes == []
    assert r.expire(150.0) == []
    (b,) = r.contacts("1001", 150.0)
    assert b.source == ("198.51.100.1", 1234)
    assert r.next_deadline() == 180.0


def test_query_returns_bindings_without_change() -> None:
    r = Registrar()
    reg(r, "<sip:a@h1>", expires=600)
    result = reg(r, cseq=2, now=5.0)
    assert result.status == 200 and [b.contact for b in result.bindings] == ["sip:a@h1"]
    assert result.changes == []
    assert reg(r, user="nobody").bindings == []
    assert r.users() == ["1001"]


def test_expiry_by_time_and_deadlines() -> None:
    r = Registrar()
    assert r.next_deadline() is None
    reg(r, "<sip:a@h1>", expires=100, user="1001")
    reg(r, "<sip:b@h1>", expires=200, user="1001", call_id="c2")
    reg(r, "<sip:c@h1>", expires=150, user="1002")
    assert r.next_deadline() == 100.0
    assert r.expire(99.0) == []
    assert r.expire(100.0) == []  # 1001 still has a device
    assert r.next_deadline() == 150.0
    assert r.expire(160.0) == [DeviceChange("1002", "unregistered")]
    assert r.contacts("1001", 160.0)[0].contact == "sip:b@h1"
    assert r.expire(1000.0) == [DeviceChange("1001", "unregistered")]
    assert r.next_deadline() is None and r.users() == []


def test_expired_but_unpurged_binding_is_reported_by_next_register() -> None:
    r = Registrar()
    reg(r, "<sip:a@h1>", expires=100, user="1002")
    assert r.contacts("1002", 100.0) == []  # not live any more, even before expire()
    result = reg(r, "<sip:x@h9>", expires=100, user="1003", now=120.0)
    assert result.changes == [
        DeviceChange("1002", "unregistered"),
        DeviceChange("1003", "registered"),
    ]
    assert r.expire(500.0) == [DeviceChange("1003", "unregistered")]


def test_removed_binding_leaves_no_deadline() -> None:
    r = Registrar()
    reg(r, "<sip:a@h1>", expires=100)
    reg(r, "<sip:a@h1>", expires=0, cseq=2)
    assert r.next_deadline() is None


@pytest.mark.parametrize("q", ["0", "1", "0.001", "1.5", "-1"])
def test_q_values_are_clamped(q: str) -> None:
    r = Registrar()
    reg(r, f"<sip:a@h1>;q={q}", expires=600)
    (b,) = r.contacts("1001", 0.0)
    assert 0.0 <= b.q <= 1.0


def test_device_change_str() -> None:
    assert str(DeviceChange("7", "registered")) == "7 registered"


def test_bindings_per_user_are_bounded() -> None:
    r = Registrar(max_bindings=2)
    reg(r, "<sip:a@h1>", "<sip:b@h2>", expires=600)
    refused = reg(r, "<sip:c@h3>", expires=600, cseq=2)
    assert refused.status == 403
    assert {b.contact for b in r.contacts("1001", 0.0)} == {"sip:a@h1", "sip:b@h2"}
    swapped = reg(r, "<sip:a@h1>;expires=0", "<sip:c@h3>", expires=600, cseq=3)
    assert swapped.status == 200
    assert {b.contact for b in swapped.bindings} == {"sip:b@h2", "sip:c@h3"}
    # Once a binding expired it no longer counts.
    assert reg(r, "<sip:d@h4>", expires=600, cseq=4, now=700.0).status == 200
