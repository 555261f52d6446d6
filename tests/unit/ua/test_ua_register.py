"""REGISTER as a desk phone sees it: a digest challenge, then 200 with its binding."""

from __future__ import annotations

from harness import PASSWORDS, UaHarness

from media_gateway.sip.headers import parse_contact_list


async def test_register_challenged_then_accepted_with_contact_and_expires(
    ua_h: UaHarness,
) -> None:
    phone = ua_h.phone("alice")
    first, final = phone.register(expires=600)
    assert first.status == 401
    challenges = first.headers.get_list("WWW-Authenticate")
    assert challenges and challenges[0].startswith("Digest ")
    assert 'realm="hotline"' in challenges[0]
    assert final.status == 200
    (contact,) = parse_contact_list(final.headers.get_list("Contact"))
    assert not isinstance(contact, str) and contact.uri == phone.uri
    contact_value = final.headers.get("Contact") or ""
    expires = int(contact_value.split("expires=")[1])
    assert 590 <= expires <= 600
    assert ua_h.presence == [("alice", True)]
    (binding,) = ua_h.registrations.contacts("alice", ua_h.loop.time())
    assert binding.source == phone.addr and binding.contact == phone.uri


async def test_refresh_does_not_announce_presence_twice(ua_h: UaHarness) -> None:
    phone = ua_h.phone("alice")
    assert phone.register()[-1].status == 200
    assert phone.register()[-1].status == 200
    assert ua_h.presence == [("alice", True)]
    assert len(ua_h.registrations.contacts("alice", ua_h.loop.time())) == 1


async def test_wrong_password_stays_401(ua_h: UaHarness) -> None:
    phone = ua_h.phone("alice")
    first, second = phone.register(password="not-" + PASSWORDS["alice"])
    assert (first.status, second.status) == (401, 401)
    assert second.headers.get_list("WWW-Authenticate")  # challenged again, nothing else said
    assert ua_h.presence == []
    assert ua_h.registrations.contacts("alice", ua_h.loop.time()) == []


async def test_unknown_user_stays_401(ua_h: UaHarness) -> None:
    phone = ua_h.phone("mallory")
    statuses = [r.status for r in phone.register(password="guess")]
    assert statuses == [401, 401]
    assert ua_h.presence == []


async def test_unregister_with_expires_zero_announces_absence(ua_h: UaHarness) -> None:
    phone = ua_h.phone("alice")
    assert phone.register()[-1].status == 200
    assert phone.register(expires=0)[-1].status == 200
    assert ua_h.presence == [("alice", True), ("alice", False)]
    assert ua_h.registrations.contacts("alice", ua_h.loop.time()) == []
