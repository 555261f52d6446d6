"""The terminal agent's SIP phone: registers with digest authentication, rings, answers,
sends a WAV file or a tone as its voice and records what it hears.

A thin asyncio shell around the gateway's sans-IO cores (aioquic's pattern, STYLE.md §2.3):
one UDP socket, every datagram fed to ``media_gateway.sip.endpoint.SipEndpoint`` with the
loop's time, the endpoint's datagrams sent, its events translated into the few facts the
terminal shows (:class:`PhoneEvent`), one ``call_at`` for its next deadline. Media is G.711
(PCMU or PCMA, whichever the service offers first) in 20 ms frames paced drift-free; RFC 4733
key events the service sends are not audio and are left out of the recording.

Only the public SIP surface is used: REGISTER (answering the 401 challenge), then the
service's INVITE when an offer rings this agent; re-INVITEs (hold) are answered, in-dialog
requests acknowledged. Nothing is resolved: the service and the media addresses are IP
literals (the service's SDP names one).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from media_gateway.audio.resample import resample
from media_gateway.audio.tones import silence, tone
from media_gateway.audio.wav import read_wav, write_wav
from media_gateway.rtp import g711
from media_gateway.sdp.offer_answer import NoCommonCodec, answer_offer, negotiated_media
from media_gateway.sdp.session import SdpError, SessionDescription
from media_gateway.sip import events as ev
from media_gateway.sip.auth import build_authorization, pick_challenge
from media_gateway.sip.dialog import CallHandle
from media_gateway.sip.endpoint import EndpointConfig, SipEndpoint
from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import parse_name_addr
from media_gateway.sip.uri import parse_uri

RATE = 8000
FRAME = 0.02
SAMPLES = 160
REGISTER_EXPIRES = 300
CODECS = ("PCMU", "PCMA")
_HEADER = struct.Struct("!BBHII")


# -- what the phone sends: a WAV file or a tone -------------------------------------------------


class AudioSource:
    """The phone's voice, looped: ``tone:440`` (a sine, Hz), ``silence``, or a WAV file
    (any rate, mono or stereo: mixed down and resampled to 8 kHz)."""

    def __init__(self, samples: npt.NDArray[np.int16], label: str) -> None:
        if samples.size < SAMPLES:
            samples = np.concatenate([samples, silence((SAMPLES - samples.size) / RATE)])
        self.samples = samples
        self.label = label
        self._pos = 0

    @classmethod
    def parse(cls, spec: str) -> AudioSource:
        """``tone:FREQ`` | ``silence`` | a WAV file's path; ``ValueError`` saying why not."""
        if spec == "silence":
            return cls(silence(1.0), "silence")
        if spec.startswith("tone:"):
            try:
                freq = float(spec.removeprefix("tone:"))
            except ValueError:
                raise ValueError(f"--play {spec}: expected tone:HZ (e.g. tone:440)") from None
            if not 20 <= freq <= 3800:
                raise ValueError(f"--play {spec}: a tone between 20 and 3800 Hz")
            # a whole number of periods per second keeps the loop seamless
            return cls(tone([freq], 1.0, dbfs=-10.0), f"tone {freq:g} Hz")
        path = Path(spec)
        try:
            audio = read_wav(path)
        except OSError as exc:
            raise ValueError(f"--play {spec}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ValueError(f"--play {spec}: {exc}") from None
        samples = audio.samples if audio.rate == RATE else resample(audio.samples, audio.rate, RATE)
        return cls(samples, path.name)

    def frame(self) -> npt.NDArray[np.int16]:
        """The next 20 ms (160 samples), wrapping around at the end."""
        end = self._pos + SAMPLES
        if end <= self.samples.size:
            out = self.samples[self._pos : end]
        else:
            out = np.concatenate(
                [self.samples[self._pos :], self.samples[: end - self.samples.size]]
            )
        self._pos = end % self.samples.size
        return out


class Recorder:
    """What the phone hears, every call one after the other, written to a mono 8 kHz WAV file
    at the end of each call (and at exit). Frames are placed by their RTP timestamps, so a lost
    packet is a gap of silence, not a shift."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.chunks: list[npt.NDArray[np.int16]] = []
        self.samples = 0
        self._call: list[tuple[int, npt.NDArray[np.int16]]] = []
        self._ts0: int | None = None
        self._ssrc: int | None = None
        self._base = 0

    def add(self, ssrc: int, ts: int, samples: npt.NDArray[np.int16]) -> None:
        if self._ts0 is None or ssrc != self._ssrc:
            # a new source (the service switched streams): continue after what we have
            self._base = self._call_end()
            self._ts0, self._ssrc = ts, ssrc
        offset = self._base + ((ts - self._ts0) & 0xFFFFFFFF)
        if offset >= 1 << 31:  # reordered before the first packet: dropped
            return
        self._call.append((offset, samples))

    def _call_end(self) -> int:
        return max((o + s.size for o, s in self._call), default=0)

    def end_call(self) -> None:
        """Close the call's audio and write the file."""
        if self._call:
            n = min(self._call_end(), 3600 * RATE)
            out = np.zeros(n, dtype=np.int16)
            for offset, s in self._call:
                if offset < n:
                    out[offset : offset + s.size] = s[: n - offset]
            self.chunks.append(out)
            self.samples += n
        self._call, self._ts0, self._ssrc, self._base = [], None, None, 0
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        data = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)
        tmp = self.path.with_name(f".{self.path.name}.part")
        write_wav(tmp, data, RATE)
        tmp.replace(self.path)


class RtpMedia(asyncio.DatagramProtocol):
    """One call's RTP: frames of the source every 20 ms (``t0 + k * 20 ms``), what arrives
    decoded into the recorder."""

    def __init__(self, source: AudioSource, recorder: Recorder) -> None:
        self.source = source
        self.recorder = recorder
        rng = random.Random(secrets.randbits(64))
        self.ssrc = rng.getrandbits(32)
        self.seq = rng.getrandbits(16)
        self.ts = rng.getrandbits(32)
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.remote: tuple[str, int] | None = None
        self.pt = 0
        self.codec = "PCMU"
        self.sending = False
        self.sent = 0
        self.received = 0
        self._handle: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._k = 0

    async def open(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        assert self.transport is not None
        self.port = int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable: the service's port went away; the call ends by SIP

    def start(self, remote: tuple[str, int], pt: int, codec: str) -> None:
        self.remote, self.pt, self.codec = remote, pt, codec
        if self.sending:
            return
        self.sending = True
        loop = asyncio.get_running_loop()
        self._t0, self._k = loop.time(), 0
        self._tick()

    def close(self) -> None:
        self.sending = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.transport is not None:
            self.transport.close()

    def _tick(self) -> None:
        if not self.sending or self.transport is None or self.remote is None:
            return
        payload = g711.encode(self.source.frame(), self.codec).tobytes()
        header = _HEADER.pack(0x80, self.pt & 0x7F, self.seq, self.ts, self.ssrc)
        self.transport.sendto(header + payload, self.remote)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + SAMPLES) & 0xFFFFFFFF
        self.sent += 1
        loop = asyncio.get_running_loop()
        self._k += 1
        at = self._t0 + self._k * FRAME
        now = loop.time()
        if at < now - FRAME:  # late (a stalled loop): skip what was missed
            self._k = int((now - self._t0) / FRAME) + 1
            at = self._t0 + self._k * FRAME
        self._handle = loop.call_at(at, self._tick)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        pt = data[1] & 0x7F
        if pt not in (0, 8) or (data[0] & 0x3F) != 0:  # keys, comfort noise, RTCP, extensions
            return
        _, _, _, ts, ssrc = _HEADER.unpack_from(data)
        self.received += 1
        codec = "PCMU" if pt == 0 else "PCMA"
        self.recorder.add(ssrc, ts, g711.decode(data[12:], codec))


# -- what the terminal hears from the phone ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhoneEvent:
    """A fact for the screen."""

    kind: Literal["registered", "unregistered", "ringing", "answered", "ended", "problem"]
    call_id: str = ""
    caller: str = ""
    """The caller as the INVITE's From names them (user part)."""
    detail: str = ""


def _user(header: str) -> str:
    try:
        return parse_uri(parse_name_addr(header).uri).user or ""
    except SipParseError:
        return ""


def local_address_towards(host: str, port: int) -> str:
    """Our address on the route to the service (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return str(s.getsockname()[0])


class Phone:
    """One agent's phone (see module doc). ``on_event`` is called on the loop."""

    def __init__(
        self,
        *,
        server: tuple[str, int],
        user: str,
        password: str,
        source: AudioSource,
        recorder: Recorder,
        on_event: Callable[[PhoneEvent], None],
        local_host: str | None = None,
        expires: int = REGISTER_EXPIRES,
    ) -> None:
        self.server = server
        self.user = user
        self.password = password
        self.source = source
        self.recorder = recorder
        self.on_event = on_event
        self.local_host = local_host or local_address_towards(*server)
        self.expires = expires
        self.loop = asyncio.get_running_loop()
        self.endpoint: SipEndpoint | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.registered = False
        self.call: CallHandle | None = None
        """The call ringing or up (one at a time: a second INVITE gets 486)."""
        self.answered = False
        self.media: RtpMedia | None = None
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pumping = False
        self._reg_call_id = f"reg-{secrets.token_hex(8)}"
        self._reg_cseq = 0
        self._refresh: asyncio.Task[None] | None = None

    # -- the shell -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the socket (SIP listens where it registers)."""
        phone = self

        class _Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                assert phone.endpoint is not None
                phone.endpoint.receive(data, (addr[0], addr[1]), phone.loop.time())
                phone.pump()

            def error_received(self, exc: Exception) -> None:
                pass

        family = socket.AF_INET6 if ":" in self.local_host else socket.AF_INET
        self.transport, _ = await self.loop.create_datagram_endpoint(
            _Protocol, local_addr=(self.local_host, 0), family=family
        )
        self.port = int(self.transport.get_extra_info("sockname")[1])
        self.endpoint = SipEndpoint(
            EndpointConfig(
                host=self.local_host,
                port=self.port,
                user_agent="hotline-agent",
                contact_user=self.user,
                invite_server_timeout=120.0,
            ),
            rng=random.Random(secrets.randbits(64)),
        )

    def pump(self) -> None:
        """Deliver events, send datagrams, re-arm the timer (re-entrant calls fold in)."""
        if self._pumping or self.endpoint is None:
            return
        self._pumping = True
        ep = self.endpoint
        try:
            while True:
                event = ep.next_event()
                if event is None:
                    out = ep.datagrams_to_send()
                    if not out:
                        break
                    for item in out:
                        if self.transport is not None:
                            self.transport.sendto(item.data, item.dest)
                    continue
                self._handle(event)
        finally:
            self._pumping = False
        deadline = ep.next_deadline()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.endpoint is not None:
            self.endpoint.handle_timer(self.loop.time())
        self.pump()

    async def close(self) -> None:
        """Hang up, unregister, close the sockets."""
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        if self.call is not None and not self.call.ended:
            self.hangup()
        if self.registered:
            with contextlib.suppress(OSError):
                await self.register(expires=0)
        self._end_media()
        self.recorder.save()
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()

    # -- REGISTER ------------------------------------------------------------------------------

    async def _request(self, headers: list[tuple[str, str]]) -> Any:
        assert self.endpoint is not None
        host = self.server[0]
        self._reg_cseq += 1
        tx = self.endpoint.request(
            "REGISTER",
            f"sip:{host}" if ":" not in host else f"sip:[{host}]",
            self.server,
            headers=headers,
            now=self.loop.time(),
            call_id=self._reg_call_id,
            cseq=self._reg_cseq,
        )
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._pending[tx] = fut
        self.pump()
        try:
            return await asyncio.wait_for(fut, 40.0)
        except TimeoutError:
            self._pending.pop(tx, None)
            return None

    async def register(self, *, expires: int | None = None) -> int:
        """REGISTER (answering the digest challenge); the final status (408: no answer)."""
        assert self.endpoint is not None
        expires = self.expires if expires is None else expires
        host = self.server[0] if ":" not in self.server[0] else f"[{self.server[0]}]"
        aor = f"sip:{self.user}@{host}"
        me = self.local_host if ":" not in self.local_host else f"[{self.local_host}]"
        base = [
            ("From", f"<{aor}>;tag=r{secrets.token_hex(4)}"),
            ("To", f"<{aor}>"),
            ("Contact", f"<sip:{self.user}@{me}:{self.port}>"),
            ("Expires", str(expires)),
        ]
        result = await self._request(base)
        for _ in range(2):
            if not isinstance(result, ev.ResponseReceived):
                return 408
            resp = result.response
            if resp.status not in (401, 407):
                break
            name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
            try:
                challenge = pick_challenge(resp.headers.get_list(name))
                auth = build_authorization(
                    challenge,
                    method="REGISTER",
                    uri=f"sip:{host}",
                    username=self.user,
                    password=self.password,
                    cnonce=secrets.token_hex(8),
                )
            except SipParseError:
                return int(resp.status)
            header = "Authorization" if resp.status == 401 else "Proxy-Authorization"
            result = await self._request([*base, (header, auth)])
        if not isinstance(result, ev.ResponseReceived):
            return 408
        status = int(result.response.status)
        was = self.registered
        self.registered = status < 300 and expires > 0
        if self.registered and not was:
            self.on_event(PhoneEvent("registered", detail=f"{self.local_host}:{self.port}"))
            self._refresh = self.loop.create_task(self._keep_registered())
        elif was and not self.registered:
            self.on_event(PhoneEvent("unregistered", detail=str(status)))
        return status

    async def _keep_registered(self) -> None:
        while True:
            await asyncio.sleep(max(10.0, self.expires / 2))
            status = await self.register()
            if status >= 300:
                self.on_event(PhoneEvent("problem", detail=f"registration refused ({status})"))

    # -- calls -----------------------------------------------------------------------------------

    def _handle(self, event: Any) -> None:
        ep = self.endpoint
        assert ep is not None
        now = self.loop.time()
        match event:
            case ev.ResponseReceived() | ev.RequestTimedOut():
                fut = self._pending.pop(event.transaction, None)
                if fut is not None and not fut.done():
                    fut.set_result(event)
            case ev.InviteReceived():
                if self.call is not None and not self.call.ended:
                    ep.respond(event.call, 486, now=now)
                    return
                self.call = event.call
                self.answered = False
                ep.respond(event.call, 180, now=now)
                caller = _user(event.request.headers.get("From") or "")
                self.on_event(PhoneEvent("ringing", event.call.call_id, caller))
            case ev.ReinviteReceived():
                self._answer_reinvite(event)
            case ev.AckReceived():
                if event.sdp and self.media is not None and not self.media.sending:
                    self._start_media_from(event.sdp)
            case ev.CancelReceived() | ev.CallEnded() | ev.AckTimedOut():
                if event.call is self.call:
                    self._ended(getattr(event, "reason", "") or type(event).__name__)
            case ev.InDialogRequestReceived():
                ep.respond(event.transaction, 200, now=now)
            case ev.RequestReceived():
                ep.respond(event.transaction, 405, now=now)
            case _:
                pass

    def _ended(self, reason: str) -> None:
        call, self.call = self.call, None
        self._end_media()
        self.recorder.end_call()
        if call is not None:
            self.on_event(PhoneEvent("ended", call.call_id, detail=reason))

    def _end_media(self) -> None:
        if self.media is not None:
            self.media.close()
            self.media = None

    def _start_media_from(self, sdp: bytes) -> None:
        """Send to where the service's description says (its first PCMU/PCMA)."""
        if self.media is None:
            return
        try:
            remote = SessionDescription.parse(sdp)
            media = remote.media[0] if remote.media else None
            conn = remote.connection_for(media) if media is not None else None
            if media is None or conn is None or media.port == 0:
                return
            rtpmap = media.rtpmap()
            for fmt in media.formats:
                name = rtpmap.get(int(fmt), (None,))[0] if fmt.isdigit() else None
                name = name or {"0": "PCMU", "8": "PCMA"}.get(fmt)
                if name is not None and name.upper() in CODECS:
                    self.media.start((conn.address, media.port), int(fmt), name.upper())
                    return
        except (SdpError, ValueError):
            return

    async def answer(self) -> str:
        """Answer the ringing call: 200 with our description, media flowing. "" or why not."""
        ep, call = self.endpoint, self.call
        if ep is None or call is None or call.ended or self.answered:
            return "no call is ringing on this phone"
        media = RtpMedia(self.source, self.recorder)
        await media.open(self.local_host)
        if call.ended or self.call is not call:  # cancelled meanwhile
            media.close()
            return "the call was withdrawn"
        offer_body = call.invite.body
        try:
            if offer_body:
                offer = SessionDescription.parse(offer_body)
                sdp = answer_offer(offer, local_ip=self.local_host, local_port=media.port,
                                   supported=CODECS)  # fmt: skip
                params = negotiated_media(offer, sdp, local_is_offerer=False)
                media.start((params.remote_ip, params.remote_port), params.payload_type,
                            params.codec)  # fmt: skip
            else:  # a late offer: ours now, theirs in the ACK
                from media_gateway.sdp.offer_answer import make_offer

                sdp = make_offer(local_ip=self.local_host, local_port=media.port, codecs=CODECS)
        except (SdpError, NoCommonCodec) as exc:
            media.close()
            ep.respond(call, 488, now=self.loop.time())
            self.pump()
            return f"cannot answer: {exc}"
        self.media = media
        self.answered = True
        ep.respond(call, 200, body=sdp.to_bytes(), now=self.loop.time())
        self.pump()
        self.on_event(PhoneEvent("answered", call.call_id))
        return ""

    def _answer_reinvite(self, event: ev.ReinviteReceived) -> None:
        ep = self.endpoint
        assert ep is not None
        now = self.loop.time()
        if self.media is None or not event.sdp:
            ep.respond(event.transaction, 488 if self.media is None else 200, now=now)
            return
        try:
            offer = SessionDescription.parse(event.sdp)
            sdp = answer_offer(offer, local_ip=self.local_host, local_port=self.media.port,
                               supported=CODECS, version=1)  # fmt: skip
            params = negotiated_media(offer, sdp, local_is_offerer=False)
        except (SdpError, NoCommonCodec):
            ep.respond(event.transaction, 488, now=now)
            return
        self.media.start((params.remote_ip, params.remote_port), params.payload_type, params.codec)
        ep.respond(event.transaction, 200, body=sdp.to_bytes(), now=now)

    def decline(self) -> str:
        """Refuse the ringing call (603 Decline). "" or why not."""
        ep, call = self.endpoint, self.call
        if ep is None or call is None or call.ended or self.answered:
            return "no call is ringing on this phone"
        ep.respond(call, 603, now=self.loop.time())
        self.pump()
        self._ended("declined")
        return ""

    def hangup(self) -> str:
        """BYE (or 480 while ringing). "" or why not."""
        ep, call = self.endpoint, self.call
        if ep is None or call is None or call.ended:
            return "no call on this phone"
        ep.bye(call, self.loop.time())
        self.pump()
        self._ended("hung up")
        return ""

    def media_counts(self) -> tuple[int, int]:
        """RTP packets sent and received on the call up now."""
        m = self.media
        return (m.sent, m.received) if m is not None else (0, 0)
