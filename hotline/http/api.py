"""The API's route table: every route declared once, with who may call it and its models.

One declaration gives four things, so they cannot drift apart:

* the aiohttp route (``Api.mount``),
* the access rule, checked before the handler runs (``Access``; a route without one cannot be
  declared, and ``tests/unit/hotline/test_route_access.py`` walks the table),
* request validation (pydantic models for the body, the query string and the path), answered
  with the API's one error shape (``hotline/http/middleware.py``),
* the OpenAPI 3.1 document (``Api.openapi()``), built from the same pydantic models: pydantic
  v2 writes JSON Schema 2020-12, which is OpenAPI 3.1's schema dialect, so the document is
  generated, never written by hand.

A JSON handler is ``async def handler(call: ApiCall) -> Any`` and returns an instance of its
declared ``response`` type (serialised by pydantic: datetimes as ISO 8601). A route that answers
something else (a page, a WebSocket, audio) is declared with ``raw=True`` and returns its own
``web.StreamResponse``; it still gets the access check.

Why not a framework (FastAPI, aiohttp-pydantic, aiohttp-apispec): the service is an aiohttp
application (WebSockets and the SIP loop share it), FastAPI would bring a second server stack,
and the aiohttp plug-ins generate OpenAPI 3.0 with their own schema code or marshmallow. The
schema work here is pydantic's; this module only walks the table (docs/architecture.md).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Literal, Protocol

from aiohttp import hdrs, web
from pydantic import BaseModel, TypeAdapter, ValidationError

from hotline.http.middleware import JSON_CONTENT_TYPE, ApiError, api_error, read_json


class Role(StrEnum):
    """A staff member's role. Each includes the rights of those before it."""

    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANKS = {Role.AGENT: 0, Role.SUPERVISOR: 1, Role.ADMIN: 2}


class Access(Enum):
    """Who may call a route."""

    PUBLIC = "public"
    """Anyone: health, the sign-in itself, the caller's WebRTC page, the API document."""
    OWN_AUTH = "own-auth"
    """The handler authenticates the caller itself (a WebSocket that signs in on its first
    message with the SIP password); say how in the route's description."""
    METRICS = "metrics"
    """``[http] metrics_token`` when one is set (or a supervisor); open otherwise."""
    SIGNED_IN = "signed-in"
    """Any signed-in staff member."""
    SELF = "self"
    """An agent for their own ``{agent_id}``; a supervisor or admin for anyone's."""
    SUPERVISOR = "supervisor"
    """Supervisors and admins."""
    ADMIN = "admin"
    """Admins only."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, once authenticated."""

    user: str
    role: Role
    via: Literal["token", "cookie", "metrics"]
    csrf: str | None = None
    """The session's CSRF token (cookie sessions only): unsafe methods must echo it."""
    session: str = ""
    """An opaque id of the token or session (for the audit trail; never the secret)."""


class Authenticator(Protocol):
    """Finds the principal behind a request (a bearer token or a session cookie)."""

    async def authenticate(self, request: web.Request) -> Principal | None: ...

    def metrics_token_ok(self, request: web.Request) -> bool | None:
        """True/False when a metrics token is configured and was (not) given; None when none is
        configured (``/metrics`` is then open)."""
        ...


AuditHook = Callable[["ApiCall", int], Awaitable[None]]
"""Called after every state-changing request that reached its handler, with the status."""

PRINCIPAL = web.RequestKey("principal", object)
"""``request[PRINCIPAL]``: the request's ``Principal`` (or None), for middleware after the check."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


@dataclass(slots=True)
class ApiCall:
    """One request, validated: what a handler gets."""

    request: web.Request
    principal: Principal | None
    endpoint: Endpoint
    body: Any = None
    query: Any = None
    path: Any = None

    @property
    def user(self) -> Principal:
        """The principal of a route that requires sign-in (never None there)."""
        if self.principal is None:
            raise api_error(401, "unauthorized", "sign in first")
        return self.principal

    def match(self, name: str) -> str:
        return self.request.match_info[name]


Handler = Callable[[ApiCall], Awaitable[Any]]


@dataclass(slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    access: Access
    summary: str
    description: str = ""
    tags: tuple[str, ...] = ()
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path_model: type[BaseModel] | None = None
    response: Any = None
    """The response type (a model, ``list[Model]``, ...); None for 204 No Content."""
    status: int = 200
    raw: bool = False
    """The handler returns its own ``web.StreamResponse`` (page, WebSocket, file)."""
    raw_content_type: str = ""
    """What a raw route answers (for the document): ``text/html``, ``audio/wav``..."""
    errors: tuple[int, ...] = ()
    """Error statuses the route answers besides the access ones (for the document)."""
    adapter: TypeAdapter[Any] | None = field(default=None, repr=False)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


def _forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def check_access(endpoint: Endpoint, principal: Principal | None, request: web.Request) -> None:
    """Raise 401/403 unless ``principal`` may call ``endpoint`` (``request`` for ``{agent_id}``)."""
    access = endpoint.access
    if access in (Access.PUBLIC, Access.OWN_AUTH, Access.METRICS):
        return
    if principal is None or principal.via == "metrics":
        raise ApiError(
            401,
            "unauthorized",
            "sign in first (POST /api/session), or send Authorization: Bearer <token>",
            headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="hotline"'},
        )
    role = principal.role
    if access is Access.SIGNED_IN:
        return
    if access is Access.SELF:
        target = request.match_info.get("agent_id")
        if target is None:
            raise RuntimeError(f"{endpoint.path}: Access.SELF needs an {{agent_id}} in the path")
        if target != principal.user and not role.at_least(Role.SUPERVISOR):
            raise _forbidden("an agent sees and changes only their own work")
        return
    if access is Access.SUPERVISOR and not role.at_least(Role.SUPERVISOR):
        raise _forbidden("this needs a supervisor")
    if access is Access.ADMIN and not role.at_least(Role.ADMIN):
        raise _forbidden("this needs an admin")


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        referer = request.headers.get(hdrs.REFERER)
        if referer is None:
            return True  # not a browser's cross-site request (browsers send Origin on POST)
        origin = "/".join(referer.split("/")[:3])
    return origin == f"{request.scheme}://{request.host}"


def check_csrf(principal: Principal | None, request: web.Request) -> None:
    """A cookie session's state change needs the same origin and the session's CSRF token."""
    if principal is None or principal.via != "cookie" or request.method in SAFE_METHODS:
        return
    if not _same_origin(request):
        raise _forbidden("cross-origin request refused (CSRF)")
    given = request.headers.get(CSRF_HEADER, "")
    if principal.csrf is None or not hmac.compare_digest(given, principal.csrf):
        raise _forbidden(f"missing or wrong {CSRF_HEADER} header (CSRF)")


API_KEY: web.AppKey[Api]


class Api:
    """The route table. Declare with :meth:`route`; :meth:`mount` on an aiohttp app."""

    def __init__(
        self,
        *,
        title: str = "hotline",
        version: str = "0",
        authenticator: Authenticator | None = None,
        audit: AuditHook | None = None,
    ) -> None:
        self.title = title
        self.version = version
        self.authenticator = authenticator
        self.audit = audit
        self.endpoints: list[Endpoint] = []
        self._openapi: tuple[int, dict[str, Any]] | None = None

    def route(
        self,
        method: str,
        path: str,
        *,
        access: Access,
        summary: str,
        description: str = "",
        tags: Iterable[str] = (),
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        path_model: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        raw: bool = False,
        raw_content_type: str = "",
        errors: Iterable[int] = (),
    ) -> Callable[[Handler], Handler]:
        """Declare a route; use as a decorator on its handler."""

        def add(handler: Handler) -> Handler:
            endpoint = Endpoint(
                method=method.upper(),
                path=path,
                handler=handler,
                access=access,
                summary=summary,
                description=description or (handler.__doc__ or "").strip(),
                tags=tuple(tags),
                body=body,
                query=query,
                path_model=path_model,
                response=response,
                status=status,
                raw=raw,
                raw_content_type=raw_content_type,
                errors=tuple(errors),
                adapter=None if raw or response is None else TypeAdapter(response),
            )
            for e in self.endpoints:
                if (e.method, e.path) == (endpoint.method, endpoint.path):
                    raise ValueError(f"{method} {path} declared twice")
            self.endpoints.append(endpoint)
            return handler

        return add

    def find(self, method: str, path: str) -> Endpoint | None:
        for e in self.endpoints:
            if e.method == method.upper() and e.path == path:
                return e
        return None

    async def principal(self, request: web.Request) -> Principal | None:
        if self.authenticator is None:
            return None
        return await self.authenticator.authenticate(request)

    def _wrap(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            principal = await self.principal(request)
            if endpoint.access is Access.METRICS and self.authenticator is not None:
                ok = self.authenticator.metrics_token_ok(request)
                staff = principal is not None and principal.role.at_least(Role.SUPERVISOR)
                if ok is False and not staff:
                    raise ApiError(
                        401,
                        "unauthorized",
                        "this needs the metrics token (Authorization: Bearer <token>)",
                        headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="metrics"'},
                    )
            check_access(endpoint, principal, request)
            check_csrf(principal, request)
            request[PRINCIPAL] = principal
            call = ApiCall(request=request, principal=principal, endpoint=endpoint)
            if endpoint.path_model is not None:
                call.path = _validate_params(endpoint.path_model, dict(request.match_info), "path")
            if endpoint.query is not None:
                call.query = _validate_params(endpoint.query, _query_dict(request), "query")
            if endpoint.body is not None:
                call.body = await read_json(request, endpoint.body)
            status = 500
            try:
                result = await endpoint.handler(call)
                response = self._respond(endpoint, result)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                if self.audit is not None and request.method not in SAFE_METHODS:
                    await self.audit(call, status)

        handle.__name__ = endpoint.operation_id
        return handle

    @staticmethod
    def _respond(endpoint: Endpoint, result: Any) -> web.StreamResponse:
        if endpoint.raw:
            if not isinstance(result, web.StreamResponse):
                raise TypeError(f"{endpoint.path}: a raw route returns a web.StreamResponse")
            return result
        if endpoint.adapter is None:
            return web.Response(status=endpoint.status if endpoint.status != 200 else 204)
        body = endpoint.adapter.dump_json(result, by_alias=True)
        return web.Response(body=body, status=endpoint.status, content_type=JSON_CONTENT_TYPE)

    def mount(self, app: web.Application) -> None:
        for e in self.endpoints:
            handler = self._wrap(e)
            if e.method == "GET":
                app.router.add_get(e.path, handler, allow_head=False)
            else:
                app.router.add_route(e.method, e.path, handler)

    def openapi(self, *, servers: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every declared route. Built once per set of routes and
        kept: building it takes tens of milliseconds of the event loop, and the document is
        public, so a client asking for it again and again must not stall the calls."""
        key = len(self.endpoints)
        if self._openapi is None or self._openapi[0] != key:
            self._openapi = (key, build_openapi(self, servers=[]))
        return {**self._openapi[1], "servers": servers or []}


def _query_dict(request: web.Request) -> dict[str, Any]:
    """Query parameters; a repeated one becomes a list."""
    out: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        out[key] = values if len(values) > 1 else values[0]
    return out


def _validate_params(model: type[BaseModel], data: dict[str, Any], where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {
                "path": ".".join(str(p) for p in e["loc"]),
                "reason": e["msg"].removeprefix("Value error, "),
                "type": e["type"],
            }
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(
            422, "validation_failed", f"the {where} parameters do not fit", details
        ) from None


# --- the OpenAPI document -------------------------------------------------------------------


class ErrorDetail(BaseModel):
    path: str
    reason: str
    type: str


class ErrorInfo(BaseModel):
    status: int
    code: str
    message: str
    details: list[ErrorDetail] | None = None
    error_id: str | None = None


class ErrorBody(BaseModel):
    """Every error the API answers (hotline/http/middleware.py)."""

    error: ErrorInfo


REF = "#/components/schemas/{model}"

_STATUS_TEXT = {
    400: "Not JSON",
    401: "Not signed in, or a wrong token",
    403: "Signed in, but not allowed",
    404: "Not found",
    409: "Conflicts with the current state",
    422: "Does not fit the model",
    423: "Locked after repeated failures",
    429: "Too many requests",
    503: "Not available now",
}


def _params(model: type[BaseModel], where: str, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    schemas.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        description = prop.pop("description", None)
        param: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


def build_openapi(api: Api, *, servers: list[dict[str, str]]) -> dict[str, Any]:
    typed: list[tuple[Any, Literal["validation", "serialization"]]] = [(ErrorBody, "serialization")]
    for e in api.endpoints:
        if e.body is not None:
            typed.append((e.body, "validation"))
        if e.adapter is not None:
            typed.append((e.response, "serialization"))
    keyed, defs = TypeAdapter.json_schemas(
        [(i, mode, TypeAdapter(t)) for i, (t, mode) in enumerate(typed)], ref_template=REF
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    index = {(id(t), mode): i for i, (t, mode) in enumerate(typed)}

    def schema_of(t: Any, mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        return dict(keyed[(index[(id(t), mode)], mode)])

    error_ref = schema_of(ErrorBody, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for e in api.endpoints:
        op: dict[str, Any] = {
            "operationId": e.operation_id,
            "summary": e.summary,
            "tags": list(e.tags) or ["api"],
            "x-access": e.access.value,
        }
        if e.description:
            op["description"] = e.description
        params: list[dict[str, Any]] = []
        declared = set()
        if e.path_model is not None:
            params += _params(e.path_model, "path", schemas)
            declared = {p["name"] for p in params}
        for part in e.path.split("/"):
            if part.startswith("{") and part.endswith("}"):
                name = part[1:-1].split(":")[0]
                if name not in declared:
                    params.append(
                        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    )
        if e.query is not None:
            params += _params(e.query, "query", schemas)
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {JSON_CONTENT_TYPE: {"schema": schema_of(e.body, "validation")}},
            }
        responses: dict[str, Any] = {}
        if e.raw:
            content_type = e.raw_content_type or "application/octet-stream"
            responses[str(e.status)] = {
                "description": e.summary,
                "content": {content_type: {"schema": {}}},
            }
        elif e.adapter is None:
            responses["204" if e.status == 200 else str(e.status)] = {"description": "Done"}
        else:
            responses[str(e.status)] = {
                "description": e.summary,
                "content": {JSON_CONTENT_TYPE: {"schema": schema_of(e.response, "serialization")}},
            }
        errors = set(e.errors)
        if e.body is not None:
            errors |= {400, 422}
        if e.query is not None or e.path_model is not None:
            errors.add(422)
        if e.access not in (Access.PUBLIC, Access.OWN_AUTH):
            errors.add(401)
        if e.access in (Access.SELF, Access.SUPERVISOR, Access.ADMIN) or (
            e.method not in SAFE_METHODS and e.access is not Access.PUBLIC
        ):
            errors.add(403)
        for status in sorted(errors):
            responses[str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": {JSON_CONTENT_TYPE: {"schema": error_ref}},
            }
        op["responses"] = responses
        if e.access not in (Access.PUBLIC, Access.OWN_AUTH):
            op["security"] = (
                [{"metrics": []}, {}]
                if e.access is Access.METRICS
                else [{"bearer": []}, {"session": [], "csrf": []}]
            )
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": api.title,
            "version": api.version,
            "description": (
                "The hotline service's API. Sign in with POST /api/session (a session cookie "
                "for browsers, with an X-CSRF-Token header on every state change) or send "
                "Authorization: Bearer <token> (POST /api/tokens). Every error has one shape "
                "(ErrorBody). Times are ISO 8601 in UTC."
            ),
        },
        "servers": servers,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "hotline_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": CSRF_HEADER},
                "metrics": {"type": "http", "scheme": "bearer"},
            },
        },
    }


API_KEY = web.AppKey("api", Api)
"""``app[API_KEY]``: the application's route table."""
