"""Digest authentication: RFC 7616 vectors, our client against our server, and the failure
cases a registrar meets (wrong password, unknown user, expired nonce, replayed nc)."""

from __future__ import annotations

import pytest

from media_gateway.sip.auth import (
    DigestAuthenticator,
    build_authorization,
    digest_ha1,
    digest_response,
    format_challenge,
    parse_auth_header,
    pick_challenge,
)
from media_gateway.sip.errors import SipParseError

REALM = "hotline.test"
USERS = {"1001": "s3cret", "1002": "other"}
SECRET = b"0123456789abcdef0123456789abcdef"
URI = "sip:hotline.test"
_ALGS = ("SHA-256", "MD5")


def make_auth(**kw: object) -> DigestAuthenticator:
    args: dict[str, object] = {
        "realm": REALM,
        "credentials_lookup": USERS.get,
        "secret": SECRET,
    }
    args.update(kw)
    return DigestAuthenticator(**args)  # type: ignore[arg-type]


# RFC 7616 §3.9.1 (HTTP, but the computation is the same for SIP).
RFC7616 = {
    "username": "Mufasa",
    "password": "Circle of Life",
    "realm": "http-auth@example.org",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "nc": "00000001",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "qop": "auth",
}


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:
    assert digest_response(algorithm=algorithm, **RFC7616) == expected


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_client_reproduces_rfc7616_header(algorithm: str, expected: str) -> None:
    challenge = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    value = build_authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce=RFC7616["cnonce"],
    )
    scheme, p = parse_auth_header(value)
    assert scheme == "Digest"
    assert p["response"] == expected
    assert p["qop"] == "auth"
    assert p["nc"] == "00000001"
    assert p["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert p["algorithm"] == algorithm


def test_parse_quoted_commas_and_escapes() -> None:
    scheme, p = parse_auth_header(
        'Digest  realm="a\\"b,c", qop="auth,auth-int",nonce=xyz ,  stale=TRUE, Algorithm=MD5'
    )
    assert scheme == "Digest"
    assert p == {
        "realm": 'a"b,c',
        "qop": "auth,auth-int",
        "nonce": "xyz",
        "stale": "TRUE",
        "algorithm": "MD5",
    }


@pytest.mark.parametrize(
    "bad", ["", "   ", 'Digest realm="unterminated', "Digest novalue", 'Digest "x"=1']
)
def test_parse_rejects_malformed(bad: str) -> None:
    with pytest.raises(SipParseError):
        parse_auth_header(bad)


def test_format_challenge_roundtrip() -> None:
    value = format_challenge(
        realm='we "quote"', nonce="n1", algorithm="SHA-256", stale=True, opaque="o"
    )
    scheme, p = parse_auth_header(value)
    assert scheme == "Digest"
    assert p == {
        "realm": 'we "quote"',
        "nonce": "n1",
        "algorithm": "SHA-256",
        "qop": "auth",
        "opaque": "o",
        "stale": "true",
    }
    _, legacy = parse_auth_header(format_challenge(realm="r", nonce="n", qop=None))
    assert "qop" not in legacy


def test_challenge_offers_sha256_first_then_md5() -> None:
    values = make_auth().challenge(100.0)
    algs = [parse_auth_header(v)[1]["algorithm"] for v in values]
    assert algs == ["SHA-256", "MD5"]
    params = [parse_auth_header(v)[1] for v in values]
    assert all(p["qop"] == "auth" and p["realm"] == REALM for p in params)
    assert params[0]["nonce"] == params[1]["nonce"]
    assert all("stale" not in p for p in params)
    assert all(
        parse_auth_header(v)[1]["stale"] == "true" for v in make_auth().challenge(1, stale=True)
    )


def answer(
    auth: DigestAuthenticator,
    now: float,
    *,
    user: str = "1001",
    password: str = "s3cret",
    algorithm: str = "SHA-256",
    nc: int = 1,
    method: str = "REGISTER",
) -> str:
    challenge = pick_challenge(auth.challenge(now), supported=(algorithm,))
    return build_authorization(
        challenge, method=method, uri=URI, username=user, password=password, cnonce="c0ffee", nc=nc
    )


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_client_and_server_agree(algorithm: str) -> None:
    auth = make_auth()
    result = auth.verify("REGISTER", answer(auth, 10.0, algorithm=algorithm), 11.0)
    assert result.ok and result.username == "1001" and not result.stale


def test_wrong_password_and_unknown_user_look_identical() -> None:
    auth = make_auth()
    wrong = auth.verify("REGISTER", answer(auth, 0.0, password="guess"), 1.0)
    unknown = auth.verify("REGISTER", answer(auth, 0.0, user="9999", password="guess"), 1.0)
    assert not wrong.ok and not unknown.ok
    assert (wrong.ok, wrong.stale, wrong.username, wrong.reason) == (
        unknown.ok,
        unknown.stale,
        unknown.username,
        unknown.reason,
    )
    # Also once the nonce expired: a stale hint would reveal that the user exists only if
    # it were given for a wrong password, and it is not.
    late_wrong = auth.verify("REGISTER", answer(auth, 0.0, password="guess"), 1000.0)
    late_unknown = auth.verify("REGISTER", answer(auth, 0.0, user="x", password="g"), 1000.0)
    assert not late_wrong.stale and not late_unknown.stale
    assert late_wrong.reason == late_unknown.reason


def test_unknown_user_runs_the_lookup_and_a_digest() -> None:
    looked: list[str] = []

    def lookup(user: str) -> str | None:
        looked.append(user)
        return None

    auth = make_auth(credentials_lookup=lookup)
    assert not auth.verify("REGISTER", answer(auth, 0.0, user="ghost"), 1.0).ok
    assert looked == ["ghost"]


def test_expired_nonce_with_right_password_is_stale() -> None:
    auth = make_auth(nonce_ttl=300.0)
    value = answer(auth, 0.0)
    assert auth.verify("REGISTER", value, 299.0).ok
    late = auth.verify("REGISTER", answer(auth, 0.0, nc=2), 301.0)
    assert not late.ok and late.stale


def test_nonce_from_another_secret_or_forged_is_refused() -> None:
    other = make_auth(secret=b"another-secret-of-32-bytes......")
    auth = make_auth()
    assert not auth.verify("REGISTER", answer(other, 0.0), 1.0).ok
    forged = answer(auth, 0.0).replace('nonce="', 'nonce="AAAA')
    assert not auth.verify("REGISTER", forged, 1.0).ok


def test_nonce_count_must_grow() -> None:
    auth = make_auth()
    first = answer(auth, 0.0, nc=1)
    assert auth.verify("REGISTER", first, 1.0).ok
    replay = auth.verify("REGISTER", first, 2.0)
    assert not replay.ok and not replay.stale
    challenge = pick_challenge(auth.challenge(0.0))

    def on_same_nonce(nc: int) -> str:
        return build_authorization(
            challenge,
            method="REGISTER",
            uri=URI,
            username="1001",
            password="s3cret",
            cnonce="c0ffee",
            nc=nc,
        )

    assert auth.verify("REGISTER", on_same_nonce(3), 3.0).ok
    assert not auth.verify("REGISTER", on_same_nonce(2), 4.0).ok


def test_nonce_table_is_bounded() -> None:
    auth = make_auth(max_tracked_nonces=3)
    for t in range(10):
        assert auth.verify("REGISTER", answer(auth, float(t)), float(t) + 0.5).ok
    assert len(auth._nc) == 3


def test_method_and_realm_are_bound() -> None:
    auth = make_auth()
    assert not auth.verify("INVITE", answer(auth, 0.0, method="REGISTER"), 1.0).ok
    other_realm = answer(auth, 0.0).replace(f'realm="{REALM}"', 'realm="elsewhere"')
    assert not auth.verify("REGISTER", other_realm, 1.0).ok


def test_request_uri_check() -> None:
    auth = make_auth()
    value = answer(auth, 0.0)
    assert auth.verify("REGISTER", value, 1.0, request_uri="SIP:HOTLINE.TEST:5060").ok
    value = answer(auth, 0.0, nc=2)
    assert not auth.verify("REGISTER", value, 1.0, request_uri="sip:evil.test").ok


def test_legacy_rfc2069_without_qop_is_refused() -> None:
    # issue 11: qop=auth is required (no nonce count, no cnonce: nothing stops a replay)
    auth = make_auth(algorithms=("MD5",))
    nonce = auth.make_nonce(0.0)
    legacy = format_challenge(realm=REALM, nonce=nonce, qop=None)
    value = build_authorization(
        legacy, method="REGISTER", uri=URI, username="1001", password="s3cret", cnonce="x"
    )
    _, p = parse_auth_header(value)
    assert "qop" not in p and "nc" not in p and "cnonce" not in p
    refused = auth.verify("REGISTER", value, 1.0)
    assert not refused.ok and not refused.guess


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Basic dXNlcjpwYXNz",
        'Digest username="1001"',
        'Digest username="1001", realm="hotline.test", nonce="x", uri="sip:a", response="0"',
        'Digest realm="unterminated',
    ],
)
def test_garbage_is_refused_without_exception(value: str) -> None:
    result = make_auth().verify("REGISTER", value, 1.0)
    assert not result.ok and not result.stale


def test_algorithm_not_offered_is_refused() -> None:
    sha_only = make_auth(algorithms=("SHA-256",))
    both = make_auth()
    md5_answer = answer(both, 0.0, algorithm="MD5")
    assert not sha_only.verify("REGISTER", md5_answer, 1.0).ok


def test_pick_challenge_prefers_sha256_and_skips_unknown() -> None:
    values = [
        'Basic realm="x"',
        'Digest realm="r", nonce="n", algorithm=MD5',
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest realm="r", nonce="n", algorithm=SHA-256',
    ]
    assert "SHA-256" in pick_challenge(values)
    assert "MD5" in pick_challenge(values, supported=("MD5",))
    with pytest.raises(SipParseError):
        pick_challenge(['Basic realm="x"'])


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        make_auth(algorithms=("SHA-1",))
    with pytest.raises(ValueError):
        make_auth(secret=b"short")


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_store_keeping_ha1_instead_of_passwords(algorithm: str) -> None:
    stored = {(u, a): digest_ha1(a, u, REALM, pw) for u, pw in USERS.items() for a in _ALGS}
    auth = make_auth(ha1_lookup=lambda user, alg: stored.get((user, alg)))
    assert auth.verify("REGISTER", answer(auth, 0.0, algorithm=algorithm), 1.0).ok
    wrong = auth.verify("REGISTER", answer(auth, 0.0, algorithm=algorithm, password="x"), 1.0)
    unknown = auth.verify("REGISTER", answer(auth, 0.0, algorithm=algorithm, user="zz"), 1.0)
    assert not wrong.ok and not unknown.ok and wrong.reason == unknown.reason


def test_digest_ha1_matches_rfc2617_example() -> None:
    # HA1 of the RFC 2617 §3.5 example.
    assert digest_ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life") == (
        "939e7578ed9e3c518a452acee763bce9"
    )
