"""The generator's phones: a thin asyncio shell around the sans-IO SIP endpoint, and RTP.

:class:`SipShell` is aioquic's pattern (STYLE.md §2.3): one UDP socket on 127.0.0.1, every
datagram fed to ``media_gateway.sip.endpoint.SipEndpoint`` with the loop's monotonic time, the
endpoint's datagrams sent, its events handed to the owner, one ``call_at`` for its deadline.
Unlike the service's transport it never refuses calls under load (an agent's phone must ring
whatever the generator's own loop lag).

:class:`RtpStream` is one call's media: G.711 PCMU frames every 20 ms (paced for every call of
the process by one :class:`MediaClock`), RFC 4733 key events or in-band tones in place of audio
while a key sounds, and what the far end sends counted per RFC 3550 (loss, interarrival jitter:
``media_gateway.rtp.stats``) as the caller hears it. Each party's frames carry a signature
(``HLAGENT!`` or ``HLCALLR!`` and its index), so a caller knows the instant it first hears its
agent, and an agent checks that it hears the caller it was offered.

Every packet goes to 127.0.0.1 (the service's addresses, read from its SDP, are checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from media_gateway.audio.tones import dtmf_tone
from media_gateway.rtp.dtmf import DtmfSender
from media_gateway.rtp.g711 import ulaw_encode
from media_gateway.rtp.stats import ReceiverStats
from media_gateway.sip.auth import (
    build_authorization,
    digest_response_from_ha1,
    parse_auth_header,
)
from media_gateway.sip.endpoint import EndpointConfig, SipEndpoint
from media_gateway.sip.errors import SipParseError

FRAME = 0.02
SAMPLES = 160
AGENT_MAGIC = b"HLAGENT!"
CALLER_MAGIC = b"HLCALLR!"
_HEADER = struct.Struct("!BBHII")
_INDEX = struct.Struct("!I")


def loopback_only(host: str) -> bool:
    """Whether ``host`` is a loopback IP literal (the only place the generator sends)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SipShell:
    """One endpoint, one UDP socket, one timer."""

    def __init__(self, on_event: Callable[[Any], None], *, user: str, seed: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.endpoint = SipEndpoint(
            EndpointConfig(host="127.0.0.1", port=self.port, user_agent="hotline-load",
                           contact_user=user, invite_server_timeout=600.0),
            rng=random.Random(seed),
        )  # fmt: skip
        self.on_event = on_event
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pumping = False

    async def start(self) -> None:
        shell = self

        class _Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                shell.endpoint.receive(data, (addr[0], addr[1]), shell.loop.time())
                shell.pump()

            def error_received(self, exc: Exception) -> None:
                pass  # ICMP unreachable from a peer that went away: its calls time out

        self.transport, _ = await self.loop.create_datagram_endpoint(_Protocol, sock=self.sock)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()

    @property
    def now(self) -> float:
        return self.loop.time()

    def pump(self) -> None:
        """Deliver events, send datagrams, re-arm the timer (re-entrant calls fold in)."""
        if self._pumping:
            return
        self._pumping = True
        try:
            ep = self.endpoint
            while True:
                event = ep.next_event()
                if event is None:
                    out = ep.datagrams_to_send()
                    if not out:
                        break
                    for item in out:
                        if self.transport is not None and loopback_only(item.dest[0]):
                            self.transport.sendto(item.data, item.dest)
                    continue
                self.on_event(event)
        finally:
            self._pumping = False
        deadline = self.endpoint.next_deadline()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.endpoint.handle_timer(self.loop.time())
        self.pump()


def authorization(
    challenge: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    ha1: Mapping[str, Mapping[str, str]],
    cnonce: str,
) -> str:
    """An ``Authorization`` answering ``challenge``: from the password when there is one,
    else from the HA1 stored for the challenge's realm and algorithm (RFC 7616 §3.4.1)."""
    if password:
        return build_authorization(
            challenge, method=method, uri=uri, username=username, password=password, cnonce=cnonce
        )
    scheme, p = parse_auth_header(challenge)
    realm, nonce = p.get("realm", ""), p.get("nonce", "")
    algorithm = p.get("algorithm", "MD5").strip().upper()
    algorithm = "SHA-256" if algorithm in ("SHA256", "SHA-256") else algorithm
    stored = (ha1.get(realm) or {}).get(algorithm)
    if scheme.lower() != "digest" or stored is None:
        raise SipParseError(f"no password or HA1 for realm {realm!r} and {algorithm}")
    qops = [q.strip().lower() for q in p.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    nc = "00000001"
    response = digest_response_from_ha1(
        algorithm=algorithm, ha1=stored, method=method, uri=uri, nonce=nonce, qop=qop,
        nc=nc if qop else None, cnonce=cnonce if qop else None,
    )  # fmt: skip
    parts = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
             f'response="{response}"', f"algorithm={algorithm}"]  # fmt: skip
    if qop:
        parts += [f"qop={qop}", f"nc={nc}", f'cnonce="{cnonce}"']
    if "opaque" in p:
        parts.append(f'opaque="{p["opaque"]}"')
    return "Digest " + ", ".join(parts)


def signature(magic: bytes, index: int) -> bytes:
    """A 20 ms PCMU frame: the signature, the index, then silence (0xFF)."""
    head = magic + _INDEX.pack(index & 0xFFFFFFFF)
    return head + b"\xff" * (SAMPLES - len(head))


_TONES: dict[str, list[bytes]] = {}


def tone_frames(digit: str) -> list[bytes]:
    """A key as in-band audio: 100 ms of its two tones, PCMU, in 20 ms frames."""
    frames = _TONES.get(digit)
    if frames is None:
        codes = ulaw_encode(dtmf_tone(digit, 0.1)).tobytes()
        frames = [codes[k : k + SAMPLES] for k in range(0, len(codes), SAMPLES)]
        _TONES[digit] = frames
    return frames


class RtpStream(asyncio.DatagramProtocol):
    """One call's RTP (see module doc)."""

    def __init__(self, payload: bytes, *, rng: random.Random) -> None:
        self.payload = payload
        self.ssrc = rng.getrandbits(32)
        self.seq = rng.getrandbits(16)
        self.ts = rng.getrandbits(32)
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.remote: tuple[str, int] | None = None
        self.pt = 0
        self.dtmf_pt: int | None = None
        self.sending = False
        self.queue: deque[bytes | tuple[str, bytes]] = deque()
        """Frames due instead of audio: raw packets (RFC 4733) or ``("pcm", payload)``."""
        self.stats: dict[int, ReceiverStats] = {}
        self.first_rx: float | None = None
        self.last_rx: float | None = None
        self.magic = b""
        """The signature to listen for (the other party's)."""
        self.heard_at: float | None = None
        self.heard_index: int | None = None
        self.on_heard: Callable[[], None] | None = None
        self.sent = 0
        self.clock: MediaClock | None = None

    async def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self.port = int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        pass

    def start(
        self, remote: tuple[str, int], pt: int, dtmf_pt: int | None, clock: MediaClock
    ) -> None:
        if not loopback_only(remote[0]):
            raise ValueError(f"the service's media address {remote[0]} is not 127.0.0.1")
        self.remote = remote
        self.pt = pt
        self.dtmf_pt = dtmf_pt
        self.sending = True
        self.clock = clock
        clock.streams.add(self)

    def close(self) -> None:
        self.sending = False
        if self.clock is not None:
            self.clock.streams.discard(self)
        if self.transport is not None:
            self.transport.close()

    # -- keys ------------------------------------------------------------------------------

    def send_event(self, digit: str) -> None:
        """RFC 4733: 5 updates and 3 end packets, one per frame, on the audio's clock."""
        if self.dtmf_pt is None:
            raise ValueError("telephone-event was not negotiated")
        sender = DtmfSender(payload_type=self.dtmf_pt, ssrc=self.ssrc, interval_ms=20)
        # The event's timestamp is the audio clock's when its first packet goes out: after
        # the frames already queued (an earlier key's packets; each advances the clock by one
        # frame). Taking ``self.ts`` as it is now gave two keys pressed before a tick (the
        # generator's loop late by a frame or more) the same timestamp, so the second was
        # heard as the first one's retransmission (RFC 4733 §2.5.1.2: one event, one
        # timestamp): the soak's "lost" keys on the complaints path's "4321#".
        start = (self.ts + SAMPLES * len(self.queue)) & 0xFFFFFFFF
        packets = sender.packets(digit, seq=self.seq, timestamp=start, duration_ms=100)
        self.seq = (self.seq + len(packets)) & 0xFFFF
        self.queue.extend(p.packet.to_bytes() for p in packets)

    def send_tone(self, digit: str) -> None:
        self.queue.extend(("pcm", f) for f in tone_frames(digit))

    # -- sending (MediaClock) ----------------------------------------------------------------

    def tick(self) -> None:
        if not self.sending or self.transport is None or self.remote is None:
            return
        if self.queue:
            item = self.queue.popleft()
            if isinstance(item, bytes):
                self.transport.sendto(item, self.remote)
                self.ts = (self.ts + SAMPLES) & 0xFFFFFFFF
                self.sent += 1
                return
            payload = item[1]
        else:
            payload = self.payload
        header = _HEADER.pack(0x80, self.pt & 0x7F, self.seq, self.ts, self.ssrc)
        self.transport.sendto(header + payload, self.remote)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + SAMPLES) & 0xFFFFFFFF
        self.sent += 1

    # -- receiving ---------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        pt = data[1] & 0x7F
        if 72 <= pt <= 76:  # RTCP on the RTP port (RFC 5761)
            return
        now = asyncio.get_running_loop().time()
        _, _, seq, ts, ssrc = _HEADER.unpack_from(data)
        st = self.stats.get(ssrc)
        if st is None:
            st = self.stats[ssrc] = ReceiverStats()
        st.update(seq, ts, now)
        if self.first_rx is None:
            self.first_rx = now
        self.last_rx = now
        if self.magic and data[12:20] == self.magic and self.heard_at is None:
            self.heard_at = now
            self.heard_index = _INDEX.unpack_from(data, 20)[0]
            if self.on_heard is not None:
                self.on_heard()

    def reception(self) -> dict[str, float]:
        """Packets received, expected and lost, and the mean jitter over the sources heard."""
        received = expected = lost = 0
        jitters = []
        for st in self.stats.values():
            if st.received < 2:
                received += st.received
                expected += st.received
                continue
            received += st.received
            expected += st.expected
            lost += max(0, st.lost)
            jitters.append(st.jitter_ms)
        return {
            "received": received,
            "expected": expected,
            "lost": lost,
            "jitter_ms": float(np.mean(jitters)) if jitters else 0.0,
            "sources": len(self.stats),
        }


class MediaClock:
    """Sends one frame for every stream of the process each 20 ms, drift-free
    (``t0 + k * 20 ms``); a late tick sends once and skips what it missed."""

    def __init__(self) -> None:
        self.streams: set[RtpStream] = set()
        self.loop = asyncio.get_running_loop()
        self._t0 = self.loop.time()
        self._k = 0
        self._handle: asyncio.TimerHandle | None = None
        self.late_ticks = 0

    def start(self) -> None:
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        self._k += 1
        at = self._t0 + self._k * FRAME
        now = self.loop.time()
        if at < now - FRAME:
            self.late_ticks += 1
            self._k = int((now - self._t0) / FRAME) + 1
            at = self._t0 + self._k * FRAME
        self._handle = self.loop.call_at(at, self._tick)

    def _tick(self) -> None:
        for s in list(self.streams):
            s.tick()
        self._schedule()
