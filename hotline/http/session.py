"""Signing in and out, tokens for scripts, and the audit trail: translation to ``StaffAuth``.

``POST /api/session``          ``{user, password}`` -> a session cookie (``hotline_session``:
                               HttpOnly, SameSite=Strict, Path=/, Secure over TLS) and the
                               session's CSRF token, to echo in ``X-CSRF-Token`` on every state
                               change
``GET /api/session``           who I am (and, for a cookie session, its CSRF token again)
``DELETE /api/session``        sign out (ends the cookie session)
``POST /api/tokens``           ``{user, password, label}`` -> a bearer token for scripts (kept
                               hashed across restarts); needs no CSRF header
``DELETE /api/tokens/current`` revoke the token this request carries
``GET /api/audit``             the audit trail (admins): by user, time range; newest first

A wrong password and an unknown user get the same 401 after the same work; repeated failures
are slowed down, then answered 423 (with ``Retry-After``) until the lock ends, right password
or not (hotline/auth/staff.py, media_gateway/sip/lockout.py).

:func:`session_middleware` (mounted outermost by ``routes.build_http_app``) puts the cookie on
the response, and behind a TLS-terminating proxy (``[http] behind_tls_proxy``) makes the request
``https`` from the client's address (the last ``X-Forwarded-For`` hop, the one the proxy added).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ConfigDict, Field

from hotline.auth.audit import AUDIT_ACTOR, AUDIT_OUTCOME
from hotline.auth.staff import SESSION_COOKIE, StaffAuth
from hotline.config import Config
from hotline.http.api import Access, Api, ApiCall
from hotline.http.middleware import ApiError, api_error

if TYPE_CHECKING:
    from hotline.server import Hotline

COOKIE = web.RequestKey("session_cookie", tuple)
"""``request[COOKIE]``: ``("set", secret, max_age)`` or ``("clear",)``, applied by
:func:`session_middleware` to the response."""

AUDIT_PAGE_MAX = 500


# -- models -----------------------------------------------------------------------------------


class SignInRequest(BaseModel):
    """A staff member's name and password."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenRequest(SignInRequest):
    """A sign-in for a script: the token is answered instead of a cookie."""

    label: str = Field(default="", max_length=100)
    """What the token is for (shown in the audit trail)."""


class SessionInfo(BaseModel):
    user: str
    role: Literal["agent", "supervisor", "admin"]
    csrf_token: str
    """Send it back in the ``X-CSRF-Token`` header of every POST, PUT, PATCH and DELETE."""
    expires_at: datetime


class WhoAmI(BaseModel):
    user: str
    role: Literal["agent", "supervisor", "admin"]
    via: Literal["token", "cookie"]
    """How this request was signed in."""
    csrf_token: str | None = None
    """The session's CSRF token (cookie sessions only)."""


class TokenInfo(BaseModel):
    token: str
    """``Authorization: Bearer <token>``. Shown once: only its hash is kept."""
    user: str
    role: Literal["agent", "supervisor", "admin"]
    label: str
    expires_at: datetime


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, max_length=64)
    """Rows of this user (the signed-in user, or the name tried at a sign-in)."""
    since: datetime | None = None
    """From this time (inclusive)."""
    until: datetime | None = None
    """Until this time (exclusive)."""
    before: Annotated[int, Field(ge=1)] | None = None
    """The next page: the previous page's ``next_before``."""
    limit: int = Field(default=100, ge=1, le=AUDIT_PAGE_MAX)


class AuditEntry(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    via: str
    session: str
    """An opaque id of the session or token (never the secret)."""
    action: str
    """The API operation (``sign_in``, ``dial``...) or ``lockout``."""
    method: str
    path: str
    source: str
    """The client's address."""
    status: int
    outcome: str
    """``ok``, ``refused``, ``error``; for sign-ins ``ok``, ``failed``, ``locked``."""
    data: dict[str, Any]
    """What was asked for (path parameters, query, body), secrets replaced by ``***``."""


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_before: int | None = None
    """Pass as ``before`` for the next (older) page; absent on the last page."""


# -- middleware -------------------------------------------------------------------------------


def forwarded_for(request: web.Request) -> str | None:
    """The client's address as the proxy in front saw it (the last ``X-Forwarded-For`` hop)."""
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    hops = [h for h in hops if h]
    return hops[-1] if hops else None


def session_middleware(config: Config) -> Any:
    """The session cookie on the way out; the proxy's view of the request on the way in."""
    behind_proxy = config.http.behind_tls_proxy

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if behind_proxy:
            client = forwarded_for(request) or request.remote
            request = (
                request.clone(scheme="https", remote=client)
                if client is not None
                else request.clone(scheme="https")
            )
        response = await handler(request)
        action = request.get(COOKIE)
        if action is not None:
            if action[0] == "set":
                response.set_cookie(
                    SESSION_COOKIE,
                    action[1],
                    max_age=action[2],
                    path="/",
                    secure=request.secure,
                    httponly=True,
                    samesite="Strict",
                )
            else:
                response.del_cookie(SESSION_COOKIE, path="/")
        return response

    return middleware


# -- routes -----------------------------------------------------------------------------------


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _failed() -> ApiError:
    return ApiError(401, "sign_in_failed", "wrong user name or password")


def _locked(retry_after: float) -> ApiError:
    return ApiError(
        423,
        "locked",
        "too many failed sign-ins: try again later",
        headers={hdrs.RETRY_AFTER: str(max(1, round(retry_after)))},
    )


async def _check(auth: StaffAuth, call: ApiCall, user: str, password: str) -> str:
    """Sign ``user`` in or raise the 401/423 answer; returns the role."""
    request = call.request
    request[AUDIT_ACTOR] = user
    result = await auth.sign_in(user, password, source=request.remote or "")
    request[AUDIT_OUTCOME] = result.outcome
    if result.outcome == "locked":
        raise _locked(result.retry_after)
    if result.outcome == "failed" or result.role is None:
        raise _failed()
    return result.role.value


def declare(api: Api, hotline: Hotline) -> None:
    add_session_routes(api, hotline.auth, hotline.audit)


def add_session_routes(api: Api, auth: StaffAuth, audit: Any) -> None:
    """The sign-in routes on ``auth``, and ``GET /api/audit`` on ``audit`` (an AuditTrail)."""

    @api.route(
        "POST",
        "/api/session",
        access=Access.PUBLIC,
        summary="Sign in (a session cookie for the browser)",
        tags=["session"],
        body=SignInRequest,
        response=SessionInfo,
        errors=[401, 423],
    )
    async def sign_in(call: ApiCall) -> SessionInfo:
        """Sets the ``hotline_session`` cookie (HttpOnly, SameSite=Strict, Secure over TLS).
        Every state change in this session must send ``X-CSRF-Token: <csrf_token>`` from the
        same origin. An unknown user and a wrong password get the same 401; repeated failures
        are slowed down, then locked (423 with Retry-After)."""
        body: SignInRequest = call.body
        role = await _check(auth, call, body.user, body.password)
        previous = call.request.cookies.get(SESSION_COOKIE)
        if previous:
            auth.end_session(previous)  # a new session id at each sign-in (no fixation)
        secret, session = auth.new_session(body.user)
        call.request[COOKIE] = ("set", secret, int(auth.settings.session_ttl))
        return SessionInfo(
            user=session.user,
            role=role,  # type: ignore[arg-type]
            csrf_token=session.csrf,
            expires_at=_utc(session.expires),
        )

    @api.route(
        "GET",
        "/api/session",
        access=Access.SIGNED_IN,
        summary="Who I am",
        tags=["session"],
        response=WhoAmI,
    )
    async def who_am_i(call: ApiCall) -> WhoAmI:
        me = call.user
        return WhoAmI(
            user=me.user,
            role=me.role.value,
            via="cookie" if me.via == "cookie" else "token",
            csrf_token=me.csrf,
        )

    @api.route(
        "DELETE",
        "/api/session",
        access=Access.SIGNED_IN,
        summary="Sign out (ends the cookie session)",
        tags=["session"],
    )
    async def sign_out(call: ApiCall) -> None:
        """Ends the session of the cookie sent and clears the cookie. A bearer token is not
        touched (``DELETE /api/tokens/current`` revokes one)."""
        cookie = call.request.cookies.get(SESSION_COOKIE)
        if cookie and call.user.via == "cookie":
            auth.end_session(cookie)
            call.request[COOKIE] = ("clear",)

    @api.route(
        "POST",
        "/api/tokens",
        access=Access.PUBLIC,
        summary="A bearer token for scripts",
        tags=["session"],
        body=TokenRequest,
        response=TokenInfo,
        status=201,
        errors=[401, 423],
    )
    async def create_token(call: ApiCall) -> TokenInfo:
        """Signs in like ``POST /api/session`` (the same answers and lockout) and answers a
        token for ``Authorization: Bearer``, valid ``[security] token_days``; it survives a
        restart. Requests with a bearer token need no CSRF header."""
        body: TokenRequest = call.body
        role = await _check(auth, call, body.user, body.password)
        secret = auth.issue_token(
            body.user, ttl=auth.settings.token_ttl, label=body.label, persist=True
        )
        await auth.save_tokens()
        expires = auth.token_expiry(secret) or 0.0
        return TokenInfo(
            token=secret,
            user=body.user,
            role=role,  # type: ignore[arg-type]
            label=body.label,
            expires_at=_utc(expires),
        )

    @api.route(
        "GET",
        "/api/audit",
        access=Access.ADMIN,
        summary="The audit trail: state changes, sign-ins, lockouts (newest first)",
        tags=["session"],
        query=AuditQuery,
        response=AuditPage,
    )
    async def audit_trail(call: ApiCall) -> AuditPage:
        q: AuditQuery = call.query
        rows = await audit.read(
            actor=q.user,
            since=None if q.since is None else _epoch(q.since),
            until=None if q.until is None else _epoch(q.until),
            before_seq=q.before,
            limit=q.limit + 1,
        )
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        entries = [AuditEntry(**{**r, "at": _utc(r["at"])}) for r in rows]
        return AuditPage(entries=entries, next_before=entries[-1].seq if more else None)

    @api.route(
        "DELETE",
        "/api/tokens/current",
        access=Access.SIGNED_IN,
        summary="Revoke the bearer token of this request",
        tags=["session"],
        errors=[409],
    )
    async def revoke_token(call: ApiCall) -> None:
        secret = auth.bearer(call.request)
        if call.user.via != "token" or secret is None:
            raise api_error(409, "not_a_token", "this request carries no bearer token")
        if auth.is_operator(secret):
            raise api_error(
                409, "operator_token", "the operator token is revoked by the environment"
            )
        if auth.revoke_token(secret):
            await auth.save_tokens()


def _epoch(d: datetime) -> float:
    return (d if d.tzinfo is not None else d.replace(tzinfo=UTC)).timestamp()
