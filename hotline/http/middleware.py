"""aiohttp middleware: one JSON error shape for the whole API, and one access-log line a request.

Every error the API answers looks the same, so clients (the agent desktop, scripts, curl users)
parse one shape instead of three::

    {"error": {"status": 422, "code": "validation_failed", "message": "...",
               "details": [{"path": "hold_seconds", "reason": "...", "type": "..."}]}}

Where errors come from, and what they become:

* a handler raises :func:`api_error` (or any aiohttp ``HTTPException``: the router's 404/405
  included) -> its status; the exception's text is the message;
* a request body that is not JSON -> 400 ``bad_json``; one that does not fit the pydantic model
  -> 422 ``validation_failed`` with one detail a field (:func:`read_json` does both);
* anything else -> 500 ``internal_error`` with a generic message and ``"error_id"`` (the one field
  only a 500 has); the same id
  is logged once with the traceback, so a user's report finds the log line without the response
  ever leaking internals.

Mount them in this order (the access log outermost, so it logs the status the client got)::

    web.Application(middlewares=[access_log_middleware, error_middleware])
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from http import HTTPStatus
from typing import Any, TypeVar

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

log = structlog.get_logger("hotline.http")

QUIET_PATHS: frozenset[str] = frozenset({"/healthz", "/metrics"})
"""Paths logged at debug level: probes and scrapes every few seconds would drown the real traffic."""

USER_AGENT_MAX = 120
"""Characters of User-Agent kept in the access log (some clients send kilobytes)."""

JSON_CONTENT_TYPE = "application/json"

M = TypeVar("M", bound=BaseModel)


def _code_for(status: int) -> str:
    """``404`` -> ``not_found``: a stable machine-readable word from the standard phrase."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return phrase.lower().replace(" ", "_").replace("-", "_").replace("'", "")


def _body(
    status: int, code: str, message: str, details: list[Any] | None, error_id: str | None
) -> str:
    err: dict[str, Any] = {"status": status, "code": code, "message": message}
    if details is not None:
        err["details"] = details
    if error_id is not None:
        err["error_id"] = error_id
    return json.dumps({"error": err})


class ApiError(web.HTTPError):
    """An ``HTTPException`` of any status carrying the API's JSON error body.

    One class for all statuses (aiohttp has one class a status, some with extra required
    arguments), so handlers write ``raise api_error(409, "busy", "agent on a call")``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        error_id: str | None = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"an API error needs a 4xx or 5xx status, not {status}")
        self.status_code = status  # read by HTTPException.__init__
        super().__init__(
            headers=headers,
            text=_body(status, code, message, details, error_id),
            content_type=JSON_CONTENT_TYPE,
        )
        self.code = code
        self.message = message
        self.details = details
        self.error_id = error_id


def api_error(
    status: int, code: str, message: str, details: list[Any] | None = None
) -> web.HTTPException:
    """The exception a handler raises to answer an error in the API's shape."""
    return ApiError(status, code, message, details)


def _validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """One entry a failing field: dotted path, pydantic's reason, and its error type.

    The offending input is left out on purpose: it may be a password or a whole document.
    """
    return [
        {
            "path": ".".join(str(part) for part in e["loc"]),
            # a model validator's ValueError reads "Value error, <our text>": keep our text
            "reason": e["msg"].removeprefix("Value error, "),
            "type": e["type"],
        }
        for e in exc.errors(include_url=False, include_input=False)
    ]


def _from_validation(exc: ValidationError) -> ApiError:
    details = _validation_details(exc)
    if any(d["type"] == "json_invalid" for d in details):
        return ApiError(400, "bad_json", "the request body is not valid JSON", details)
    return ApiError(422, "validation_failed", "the request body does not fit", details)


async def read_json(request: web.Request, model: type[M]) -> M:
    """Parse and validate the request body as ``model`` (pydantic v2, in one pass over the bytes).

    Raises the API's 400 (not JSON, empty body) or 422 (JSON that does not fit, one detail a
    field), so handlers get a valid model or nothing.
    """
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _from_validation(exc) from None


def _reshape(exc: web.HTTPException) -> web.HTTPException:
    """Give an aiohttp ``HTTPException`` (router 404/405, a handler's ``HTTPNotFound``) our shape,
    keeping its status and headers (``Allow`` on 405)."""
    text = exc.text or ""
    default = f"{exc.status}: {exc.reason}"
    message = exc.reason if text in ("", default) else text
    headers = {
        k: v for k, v in exc.headers.items() if k not in (hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH)
    }
    return ApiError(exc.status, _code_for(exc.status), message, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into the API's JSON shape; see the module docstring."""
    try:
        return await handler(request)
    except ApiError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        raise _reshape(exc) from None
    except ValidationError as exc:
        raise _from_validation(exc) from None
    except json.JSONDecodeError as exc:  # ``await request.json()`` on a bad body
        raise ApiError(
            400,
            "bad_json",
            "the request body is not valid JSON",
            [{"path": "", "reason": exc.msg, "type": "json_invalid"}],
        ) from None
    except asyncio.CancelledError:
        raise  # the client went away: nothing to answer
    except Exception:
        error_id = uuid.uuid4().hex
        log.exception(
            "http_unhandled_error",
            error_id=error_id,
            method=request.method,
            path=request.path,
        )
        raise ApiError(
            500,
            "internal_error",
            "internal error; quote the error_id when reporting it",
            error_id=error_id,
        ) from None


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One ``http_request`` line a request, with the status the client got and the duration.

    Probes and scrapes (:data:`QUIET_PATHS`) go to debug so they don't flood the log.
    """
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # nginx's "client closed request": no response was sent
        raise
    finally:
        ua = request.headers.get(hdrs.USER_AGENT, "")
        fields = {
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": round((time.perf_counter() - start) * 1000.0, 2),
            "remote": request.remote,
            "user_agent": ua[:USER_AGENT_MAX],
        }
        if request.path in QUIET_PATHS:
            log.debug("http_request", **fields)
        else:
            log.info("http_request", **fields)
