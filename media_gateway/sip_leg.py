"""The SIP side of a ``CallSession``: offer/answer, hold by re-INVITE, blind transfer by REFER.

A ``SipLeg`` holds the call's endpoint handle and what was negotiated; the transaction user
(``media_gateway/ua.py``) feeds it the events of its dialog (re-INVITEs, their answers, REFER
responses and NOTIFYs). Media parameters follow every description exchanged: codec and
payload types, the peer's address (an IP literal; anything else waits for symmetric RTP),
the direction (a peer that sends ``sendonly`` or ``inactive``, or the old ``c=0.0.0.0``
form, has put us on hold).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any, Protocol, cast

from media_gateway.media.control import Direction, SrtpKeys, Update
from media_gateway.sdp.crypto import SUITES, SrtpParams, offer_crypto
from media_gateway.sdp.offer_answer import (
    LocalSession,
    MediaParams,
    NoCommonCodec,
    SrtpPolicy,
    answer_offer,
    make_offer,
    negotiated_media,
)
from media_gateway.sdp.session import SdpError, SessionDescription
from media_gateway.session import CallSession
from media_gateway.sip.endpoint import SipEndpoint
from media_gateway.sip.errors import TransactionError
from media_gateway.sip.headers import format_hostport

_MIRROR = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


class SipSide(Protocol):
    """What a leg needs from the transaction user."""

    endpoint: SipEndpoint
    loop: asyncio.AbstractEventLoop

    def flush(self) -> None: ...

    def respond_sdp(self, handle: Any, status: int, body: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class MediaUpdate:
    """What an offer/answer exchange changes in the call's media channel."""

    codec: str
    pt: int
    te_pt: int | None
    """telephone-event payload type (RFC 4733), None when the peer has none."""
    direction: str
    """Our direction: the mirror of what the peer said (RFC 3264 §6.1)."""
    remote: tuple[str, int] | None
    """Where to send RTP (an IP literal); None waits for symmetric RTP."""
    held: bool
    """The peer has put us on hold (sendonly, inactive, or the old c=0.0.0.0)."""
    srtp: SrtpParams | None = None
    """The SRTP keys (RFC 4568) when the stream is protected; None: plain RTP."""

    def op(self, chan: str, *, direction: str | None = None) -> Update:
        """The media process's ``Update`` for channel ``chan`` (``direction`` overrides ours:
        the one we asked for in our own re-INVITE). Keys are detected in-band exactly when
        the peer negotiated no telephone-event."""
        return Update(
            chan=chan,
            codec=self.codec,
            pt=self.pt,
            te_pt=self.te_pt,
            direction=cast(Direction, direction or self.direction),
            inband=self.te_pt is None,
            remote=self.remote,
            srtp=None
            if self.srtp is None
            else SrtpKeys(
                suite=self.srtp.suite,
                tx_key=base64.b64encode(self.srtp.local_key).decode("ascii"),
                rx_key=base64.b64encode(self.srtp.remote_key).decode("ascii"),
            ),
        )


def media_update(params: MediaParams) -> MediaUpdate:
    """The media change for what was negotiated."""
    remote: tuple[str, int] | None = None
    held = params.direction in ("sendonly", "inactive")
    try:
        ip = ipaddress.ip_address(params.remote_ip)
        if ip.is_unspecified:
            held = True  # RFC 2543 hold: c=0.0.0.0
        elif params.remote_port:
            remote = (params.remote_ip, params.remote_port)
    except ValueError:
        pass  # a host name: never resolved; symmetric RTP finds the peer
    return MediaUpdate(
        codec=params.codec,
        pt=params.payload_type,
        te_pt=params.dtmf_pt,
        direction=_MIRROR.get(params.direction, "sendrecv"),
        remote=remote,
        held=held,
        srtp=params.srtp,
    )


class SipLeg:
    """One SIP dialog seen as a session's leg."""

    def __init__(
        self,
        side: SipSide,
        handle: Any,
        *,
        local_ip: str,
        local_port: int,
        channel: str = "sip",
        session_id: str = "0",
        sip_port: int = 5060,
        srtp: SrtpPolicy = "off",
    ) -> None:
        self.side = side
        self.sip_hostport = format_hostport(local_ip, sip_port)
        self.handle = handle
        self.channel = channel
        self.local_ip = local_ip
        self.local_port = local_port
        self.sdp = LocalSession(session_id=session_id)
        self.answer_sdp: SessionDescription | None = None
        self.params: MediaParams | None = None
        self.direction = "sendrecv"
        self._reinvite: asyncio.Future[tuple[int, bytes]] | None = None
        self._requests: dict[Any, asyncio.Future[int]] = {}
        self._refer_done: asyncio.Future[int] | None = None
        self.answered = False
        self.srtp: SrtpPolicy = srtp
        """SRTP policy of this call (``off``, ``optional``, ``required``: offer_answer.py)."""
        self._srtp_keys: dict[str, bytes] | None = None

    # -- negotiation -----------------------------------------------------------------------

    def prepare_answer(self, offer: SessionDescription | None) -> MediaUpdate | None:
        """Our answer to the INVITE's offer (or our offer when it had none). Raises
        NoCommonCodec (the caller answers 488). Returns the media change to apply."""
        if offer is not None:
            answer = self._answer(offer)
            self.params = negotiated_media(offer, answer, local_is_offerer=False)
        else:
            answer = self._offer("sendrecv")
        self.answer_sdp = self.sdp.stamp(answer)
        return media_update(self.params) if self.params else None

    def local_offer(self, direction: str = "sendrecv") -> SessionDescription:
        return self.sdp.stamp(self._offer(direction))

    def _offer(self, direction: str) -> SessionDescription:
        """Our offer: RTP/SAVP with our keys when SRTP is required or already in use."""
        secure = self.srtp == "required" or (
            self.srtp != "off" and self.params is not None and self.params.srtp is not None
        )
        return make_offer(
            local_ip=self.local_ip,
            local_port=self.local_port,
            direction=direction,
            crypto=offer_crypto(self._keys()) if secure else (),
        )

    def _answer(self, offer: SessionDescription) -> SessionDescription:
        return answer_offer(
            offer,
            local_ip=self.local_ip,
            local_port=self.local_port,
            srtp=self.srtp,
            srtp_keys=self._keys() if self.srtp != "off" else None,
        )

    def _keys(self) -> dict[str, bytes]:
        """Our SRTP master key and salt per suite, drawn once per call (kept across
        re-INVITEs, so a hold does not re-key)."""
        if self._srtp_keys is None:
            self._srtp_keys = {suite: secrets.token_bytes(n) for suite, n in SUITES.items()}
        return self._srtp_keys

    def answer_reinvite(self, body: bytes) -> tuple[SessionDescription, MediaUpdate | None]:
        """Answer a re-INVITE's offer with our same port (RFC 3264 §8); raises SdpError or
        NoCommonCodec (the caller answers 488)."""
        if body:
            offer = SessionDescription.parse(body)
            answer = self._answer(offer)
            self.params = negotiated_media(offer, answer, local_is_offerer=False)
            return self.sdp.stamp(answer), media_update(self.params)
        return self.local_offer(self.direction), None

    # -- Leg protocol ----------------------------------------------------------------------

    async def answer(self, session: CallSession) -> None:
        if self.answered:
            return
        if self.answer_sdp is None:
            raise NoCommonCodec("no answer was prepared")
        self.side.respond_sdp(self.handle, 200, self.answer_sdp.to_bytes())
        self.answered = True

    async def hangup(self, session: CallSession, cause: str) -> None:
        ep = self.side.endpoint
        ep.bye(self.handle, now=self.side.loop.time())
        self.side.flush()

    async def set_direction(self, session: CallSession, direction: str) -> None:
        """re-INVITE with our new direction; glare (491) is retried after RFC 3261 §14.1's wait."""
        self.direction = direction
        offer = self.local_offer(direction)
        for attempt in range(3):
            loop = self.side.loop
            self._reinvite = loop.create_future()
            try:
                self.side.endpoint.reinvite(self.handle, offer.to_bytes(), now=loop.time())
            except TransactionError:
                self._reinvite = None
                await asyncio.sleep(0.5)
                continue
            self.side.flush()
            try:
                status, body = await asyncio.wait_for(self._reinvite, 40)
            except TimeoutError:
                return
            finally:
                self._reinvite = None
            if status == 491:
                await asyncio.sleep(0.21 + 0.2 * attempt)
                continue
            if 200 <= status < 300 and body:
                try:
                    answer = SessionDescription.parse(body)
                    params = negotiated_media(offer, answer, local_is_offerer=True)
                except (SdpError, NoCommonCodec):
                    return
                update = media_update(params).op(session.chan, direction=direction)
                await session.media.request(update)
            return

    async def refer(self, session: CallSession, target: str) -> bool:
        """Blind transfer (RFC 3515): the phone calls ``target``; we hang up once its NOTIFY
        reports success. False when REFER is refused (many trunks do) or fails."""
        uri = (
            target
            if target.startswith(("sip:", "sips:", "tel:"))
            else f"sip:{target}@{self.sip_hostport}"
        )
        loop = self.side.loop
        try:
            tx = self.side.endpoint.in_dialog_request(
                self.handle, "REFER", headers=[("Refer-To", f"<{uri}>")], now=loop.time()
            )
        except TransactionError:
            return False
        fut: asyncio.Future[int] = loop.create_future()
        self._requests[tx] = fut
        self._refer_done = loop.create_future()
        self.side.flush()
        try:
            status = await asyncio.wait_for(fut, 40)
        except TimeoutError:
            return False
        finally:
            self._requests.pop(tx, None)
        if not 200 <= status < 300:
            return False
        try:
            final = await asyncio.wait_for(self._refer_done, 60)
        except TimeoutError:
            return False
        if 200 <= final < 300:
            if session.state != "ended":
                await session.hangup("transferred")
            return True
        return False

    # -- events from the transaction user --------------------------------------------------

    def reinvite_answered(self, status: int, body: bytes) -> None:
        if self._reinvite is not None and not self._reinvite.done():
            self._reinvite.set_result((status, body))

    def owns_request(self, tx: Any) -> bool:
        return tx in self._requests

    def request_answered(self, tx: Any, status: int) -> None:
        fut = self._requests.get(tx)
        if fut is not None and not fut.done():
            fut.set_result(status)

    def notify(self, body: bytes) -> None:
        """A NOTIFY of the REFER's progress: ``message/sipfrag`` with the new call's status."""
        line = body.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("utf-8", "replace").split()
        if len(line) >= 2 and line[0].startswith("SIP/") and line[1].isdigit():
            status = int(line[1])
            if status >= 200 and self._refer_done is not None and not self._refer_done.done():
                self._refer_done.set_result(status)
