"""The terminal agent's client of the staff API (docs/api.md): a bearer token, the
``/api/agents/{id}/...`` controls, the case and the day's figures, and the event stream.

Sign-in is ``POST /api/tokens`` (a token labelled ``hotline agent``, revoked at exit with
``DELETE /api/tokens/current``): a bearer token needs no CSRF header and opens the WebSocket
too. The stream (``GET /api/events``) is followed with resume: the last ``seq`` and the
``stream`` of the ``reset`` are kept, and a dropped socket reconnects with ``?after=&stream=``
so no event is missed (a ``reset`` says when some were).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp


class StaffApiError(Exception):
    """An answer other than 2xx: its status, code word and message (docs/api.md's shape)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} ({self.status} {self.code})"


class StaffClient:
    """One signed-in staff member (see module doc)."""

    def __init__(self, base: str, user: str) -> None:
        self.base = base.rstrip("/")
        self.user = user
        self.token = ""
        self.role = ""
        self._session: aiohttp.ClientSession | None = None
        self.after: int | None = None
        self.stream: str | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._session

    async def sign_in(self, password: str) -> None:
        body = {"user": self.user, "password": password, "label": "hotline agent"}
        info = await self.call("POST", "/api/tokens", body, auth=False)
        self.token = str(info["token"])
        self.role = str(info.get("role", ""))

    async def close(self) -> None:
        """Revoke the token, close the connections."""
        if self.token:
            with contextlib.suppress(StaffApiError, aiohttp.ClientError, TimeoutError):
                await self.call("DELETE", "/api/tokens/current")
            self.token = ""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        """One request; the JSON answer (None for 204); ``StaffApiError`` otherwise."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        try:
            async with self.session.request(
                method, self.base + path, json=body, headers=headers
            ) as resp:
                text = await resp.text()
                data: Any = None
                if text:
                    with contextlib.suppress(ValueError):
                        data = json.loads(text)
                if resp.status >= 300:
                    err = data.get("error", {}) if isinstance(data, dict) else {}
                    raise StaffApiError(
                        resp.status,
                        str(err.get("code", "http_error")),
                        str(err.get("message", text[:200] or resp.reason or "")),
                    )
                return data
        except aiohttp.ClientError as exc:
            raise StaffApiError(0, "unreachable", f"{self.base}: {exc}") from None
        except TimeoutError:
            raise StaffApiError(0, "timeout", f"{self.base}: no answer") from None

    def agent(self, suffix: str = "") -> str:
        return f"/api/agents/{self.user}{suffix}"

    async def pause_reasons(self) -> list[str]:
        """The configured pause reasons (from the API document's ``PauseRequest``)."""
        doc = await self.call("GET", "/api/openapi.json", auth=False)
        with contextlib.suppress(KeyError, TypeError):
            reason = doc["components"]["schemas"]["PauseRequest"]["properties"]["reason"]
            values = reason.get("enum") or ([reason["const"]] if "const" in reason else [])
            return [str(v) for v in values]
        return []

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The event stream's messages, for ever: reconnects (resuming) when the socket drops."""
        delay = 0.5
        while True:
            query = ""
            if self.after is not None and self.stream:
                query = f"?after={self.after}&stream={self.stream}"
            url = self.base.replace("http", "ws", 1) + "/api/events" + query
            try:
                async with self.session.ws_connect(
                    url, headers={"Authorization": f"Bearer {self.token}"}, heartbeat=30.0
                ) as ws:
                    delay = 0.5
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        with contextlib.suppress(ValueError):
                            event = json.loads(msg.data)
                            if not isinstance(event, dict):
                                continue
                            if isinstance(event.get("seq"), int):
                                self.after = event["seq"]
                            if event.get("kind") == "reset":
                                self.stream = (event.get("data") or {}).get("stream")
                            yield event
            except (aiohttp.ClientError, TimeoutError) as exc:
                yield {"kind": "disconnected", "data": {"reason": str(exc) or type(exc).__name__}}
            else:
                yield {"kind": "disconnected", "data": {"reason": "closed"}}
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
