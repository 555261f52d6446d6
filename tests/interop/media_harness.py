"""Helpers for the media-path interop tests: an in-process Hotline, SIPp as an asyncio
subprocess, test-owned RTP sockets, and a tiny pcap reader/writer (no tshark, no scapy).

Everything is bounded: SIPp gets ``-m 1`` and ``-timeout`` and is killed by PID when a test
leaves early; sockets and the Hotline are closed by the context managers that opened them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hotline.config import parse_config
from hotline.server import Hotline
from media_gateway.rtp import g711
from media_gateway.rtp.dtmf import TelephoneEvent
from media_gateway.session import CallSession
from tests.interop.harness import SCENARIOS, as_center, free_port

SAMPLE_PCAPS = Path("/usr/share/sip-tester")
RTP_PORTS = (32000, 32998)
HOTLINE_NUMBER = "1000"

# -- pcap ------------------------------------------------------------------------------------

_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = 101


@dataclass(frozen=True, slots=True)
class PcapPacket:
    time: float
    frame: bytes
    """The whole link-layer frame as stored."""
    payload: bytes
    """The UDP payload (the RTP packet)."""


def read_pcap(path: str | Path) -> list[PcapPacket]:
    """UDP-over-IPv4 packets of a classic little/big-endian pcap (Ethernet or raw IP links)."""
    data = Path(path).read_bytes()
    if len(data) < _PCAP_HEADER.size:
        raise ValueError(f"{path}: too short for a pcap file")
    magic = struct.unpack_from("<I", data)[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file (magic {magic:#x})")
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    header = struct.Struct(endian + "IHHiIII")
    record = struct.Struct(endian + "IIII")
    linktype = header.unpack_from(data)[6]
    out: list[PcapPacket] = []
    off = header.size
    for _ in range(1_000_000):  # bounded: a pcap we read is a few thousand packets at most
        if off + record.size > len(data):
            break
        sec, frac, incl, _orig = record.unpack_from(data, off)
        off += record.size
        frame = data[off : off + incl]
        off += incl
        ip_off = 14 if linktype == _LINKTYPE_ETHERNET else 0
        if linktype == _LINKTYPE_ETHERNET and frame[12:14] != b"\x08\x00":
            continue
        if len(frame) < ip_off + 28 or frame[ip_off] >> 4 != 4 or frame[ip_off + 9] != 17:
            continue
        ihl = (frame[ip_off] & 0x0F) * 4
        udp = frame[ip_off + ihl :]
        udp_len = struct.unpack_from("!H", udp, 4)[0]
        out.append(
            PcapPacket(
                time=sec + frac / (1e9 if nano else 1e6), frame=frame, payload=udp[8:udp_len]
            )
        )
    return out


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(
    payload: bytes,
    *,
    src: tuple[str, int] = ("127.0.0.1", 6000),
    dst: tuple[str, int] = ("127.0.0.1", 6002),
    ident: int = 0,
) -> bytes:
    """An Ethernet + IPv4 + UDP frame around ``payload`` (SIPp rewrites addresses and ports)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        ident & 0xFFFF,
        0,
        64,
        17,
        0,
        socket.inet_aton(src[0]),
        socket.inet_aton(dst[0]),
    )
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    eth = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + udp


def write_pcap(path: str | Path, frames: Sequence[tuple[float, bytes]]) -> None:
    """Write (time, Ethernet frame) records as a classic microsecond pcap."""
    parts = [_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, _LINKTYPE_ETHERNET)]
    for t, frame in frames:
        sec = int(t)
        usec = round((t - sec) * 1e6)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        parts.append(_RECORD.pack(sec, usec, len(frame), len(frame)))
        parts.append(frame)
    Path(path).write_bytes(b"".join(parts))


def concat_pcaps(paths: Sequence[str | Path], out: str | Path, *, gap: float = 0.5) -> None:
    """The packets of several captures one after another, ``gap`` seconds apart."""
    frames: list[tuple[float, bytes]] = []
    t = 1_000_000.0
    for p in paths:
        packets = read_pcap(p)
        if not packets:
            continue
        first = packets[0].time
        for pkt in packets:
            frames.append((t + pkt.time - first, pkt.frame))
        t += packets[-1].time - first + gap
    write_pcap(out, frames)


# -- RTP -------------------------------------------------------------------------------------

_RTP = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class Rtp:
    pt: int
    marker: bool
    seq: int
    ts: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> Rtp | None:
    """An RTP packet (no CSRC/extension handling needed for G.711), None for RTCP/junk."""
    if len(data) < 12 or data[0] >> 6 != 2 or 200 <= data[1] <= 204:
        return None
    b0, b1, seq, ts, ssrc = _RTP.unpack_from(data)
    start = 12 + 4 * (b0 & 0x0F)
    return Rtp(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, data[start:])


def rtp_packet(payload: bytes, *, pt: int, seq: int, ts: int, ssrc: int, marker: bool) -> bytes:
    return _RTP.pack(0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + (
        payload
    )


def pcmu_packets(
    samples: npt.NDArray[np.int16], *, ssrc: int, seq: int = 1000, ts: int = 160_000
) -> list[bytes]:
    """20 ms PCMU RTP packets of ``samples`` (padded with silence to whole frames)."""
    frames = -(-samples.size // 160)
    padded = np.zeros(frames * 160, dtype=np.int16)
    padded[: samples.size] = samples
    coded = g711.encode(padded.reshape(frames, 160), "PCMU")
    return [
        rtp_packet(coded[i].tobytes(), pt=0, seq=seq + i, ts=ts + 160 * i, ssrc=ssrc, marker=i == 0)
        for i in range(frames)
    ]


def write_rtp_pcap(path: str | Path, packets: Sequence[bytes], *, start: float = 0.0) -> None:
    """RTP packets as a pcap paced at 20 ms (how SIPp's play_pcap_audio will send them)."""
    write_pcap(
        path,
        [(1_000_000.0 + start + 0.02 * i, udp_frame(p, ident=i)) for i, p in enumerate(packets)],
    )


def pcap_digits(path: str | Path, *, te_pt: int = 101) -> str:
    """The DTMF keys an RFC 4733 capture carries, one per event (SSRC, timestamp)."""
    seen: set[tuple[int, int]] = set()
    digits = []
    for pkt in read_pcap(path):
        rtp = parse_rtp(pkt.payload)
        if rtp is None or rtp.pt != te_pt:
            continue
        event = TelephoneEvent.parse(rtp.payload)
        key = (rtp.ssrc, rtp.ts)
        if event.digit is not None and key not in seen:
            seen.add(key)
            digits.append(event.digit)
    return "".join(digits)


# -- test-owned RTP sockets ------------------------------------------------------------------


@dataclass
class Arrival:
    at: float
    data: bytes
    addr: tuple[str, int]


class RtpSocket(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that a SIPp scenario's SDP names as its RTP address."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.arrivals: list[Arrival] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(self.arrivals) < 100_000:
            self.arrivals.append(Arrival(self.loop.time(), data, addr[:2]))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable from a port that closed: irrelevant here

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def rtp(self, *, since: float = 0.0, until: float = float("inf")) -> list[tuple[float, Rtp]]:
        out = []
        for a in self.arrivals:
            if since <= a.at < until:
                r = parse_rtp(a.data)
                if r is not None:
                    out.append((a.at, r))
        return out

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@contextlib.asynccontextmanager
async def rtp_socket() -> AsyncIterator[RtpSocket]:
    loop = asyncio.get_running_loop()
    sock = None
    for _ in range(20):
        port = free_port(pair=True)
        try:
            _, sock = await loop.create_datagram_endpoint(RtpSocket, local_addr=("127.0.0.1", port))
        except OSError:
            continue
        sock.port = port
        break
    if sock is None:
        raise RuntimeError("no free UDP port for a test RTP socket")
    try:
        yield sock
    finally:
        sock.close()
        await asyncio.sleep(0)  # let the transport finish closing


async def send_paced(
    sock: RtpSocket, packets: Sequence[bytes], dest: tuple[str, int], *, ptime: float = 0.02
) -> None:
    """Send RTP packets at their real-time pace (drift-free schedule)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i, p in enumerate(packets):
        delay = t0 + i * ptime - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sock.send(p, dest)


# -- the Hotline, in this test's loop --------------------------------------------------------


def gateway_config_text(sip_port: int, data_dir: Path, *, process: bool) -> str:
    http_port = free_port(socket.SOCK_STREAM)
    return f"""
[server]
sip = "127.0.0.1:{sip_port}"
http = "127.0.0.1:{http_port}"
data_dir = "{data_dir}"
log_level = "warning"

[sip]
transports = ["udp"]
rtp_ports = [{RTP_PORTS[0]}, {RTP_PORTS[1]}]

[media]
process = {"true" if process else "false"}

[entry_points]
"{HOTLINE_NUMBER}" = {{ kind = "hotline" }}
"""


@contextlib.asynccontextmanager
async def running_gateway(tmp: Path, *, process: bool) -> AsyncIterator[Hotline]:
    sip_port = free_port()
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    config = parse_config(gateway_config_text(sip_port, data, process=process))
    gw = Hotline(config)
    await gw.start()
    try:
        yield gw
    finally:
        await asyncio.wait_for(gw.stop(), 20)


def sip_address(gw: Hotline) -> str:
    return f"127.0.0.1:{gw.config.server.sip_port}"


Script = Callable[[CallSession], Awaitable[Any]]


def install_handler(gw: Hotline, script: Script) -> asyncio.Future[Any]:
    """Run ``script(session)`` for the next hotline call; its result (or error) in the future."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handler(session: CallSession) -> None:
        try:
            value = await script(session)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
            raise
        if not fut.done():
            fut.set_result(value)

    gw.switch.center = as_center(handler)
    return fut


async def drain_events(session: CallSession, *, within: float = 5.0) -> list[Any]:
    """Every event the session buffered, up to its Hangup (call after the session ended)."""
    out: list[Any] = []

    async def collect() -> None:
        async for event in session.events():
            out.append(event)

    await asyncio.wait_for(collect(), within)
    return out


async def first_of(wanted: asyncio.Future[Any], handler: asyncio.Future[Any], within: float) -> Any:
    """``wanted``'s result, unless the handler finished (or failed) first: then its error
    shows at once instead of a timeout."""
    done, _ = await asyncio.wait({wanted, handler}, timeout=within, return_when="FIRST_COMPLETED")
    if wanted in done:
        return wanted.result()
    if handler in done:
        handler.result()  # raises the handler's error
        raise AssertionError(f"the handler finished before {wanted!r}")
    raise TimeoutError(f"nothing happened within {within} s")


async def udp_port_bound(
    port: int, *, within: float = 10.0, proc: asyncio.subprocess.Process | None = None
) -> None:
    """Wait until something (SIPp: ``proc``) has bound UDP ``port`` on 127.0.0.1."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if proc is not None and proc.returncode is not None:
            raise RuntimeError(f"SIPp exited ({proc.returncode}) before binding port {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing bound UDP port {port} within {within} s")


# -- SIPp as an asyncio subprocess -----------------------------------------------------------


@dataclass
class SippRun:
    """One SIPp process: ``wait`` for it, or leave the ``async with`` and it is killed."""

    proc: asyncio.subprocess.Process
    workdir: Path
    port: int
    stdout: bytes = b""
    stderr: bytes = b""
    returncode: int | None = None
    _reader: asyncio.Task[tuple[bytes, bytes]] | None = field(default=None, repr=False)

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109 - a bound on SIPp, not a scope
        assert self._reader is not None
        self.stdout, self.stderr = await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        self.returncode = self.proc.returncode
        assert self.returncode is not None
        return self.returncode

    def report(self) -> str:
        """SIPp's errors and message trace, for assertion messages."""
        parts = [
            f"sipp rc={self.returncode}",
            self.stdout.decode(errors="replace")[-2000:],
            self.stderr.decode(errors="replace")[-2000:],
        ]
        for name in (f"errors-{self.port}.log", f"messages-{self.port}.log"):
            p = self.workdir / name
            if p.exists():
                parts.append(f"--- {name}\n" + p.read_text(errors="replace")[-6000:])
        return "\n".join(parts)


def sipp_path() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError("sipp is not installed (Debian sip-tester)")
    return path


@contextlib.asynccontextmanager
async def sipp(
    scenario: str,
    *,
    workdir: Path,
    target: str | None,
    keys: Mapping[str, str | int] | None = None,
    timeout: float = 25.0,  # noqa: ASYNC109 - SIPp's own -timeout
    local_port: int | None = None,
    media_port: int | None = None,
    extra: Sequence[str] = (),
) -> AsyncIterator[SippRun]:
    """Start SIPp with ``scenarios/<scenario>`` for one call (bounded by ``timeout``); without
    a ``target`` it is a UAS, and this returns once it listens."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    port = local_port or free_port()
    cmd = [
        sipp_path(),
        *([target] if target else []),
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-mi",
        "127.0.0.1",
        "-mp",
        str(media_port or free_port(pair=True)),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-trace_err",
        "-error_file",
        str(workdir / f"errors-{port}.log"),
        "-trace_msg",
        "-message_file",
        str(workdir / f"messages-{port}.log"),
        *extra,
    ]
    if target:
        cmd[2:2] = ["-s", HOTLINE_NUMBER]
    all_keys: dict[str, str | int] = {
        "fmts": "0 101",
        "attr": "a=rtpmap:101 telephone-event/8000",
        **(keys or {}),
    }
    for k, v in all_keys.items():
        cmd += ["-key", k, str(v)]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    run = SippRun(proc=proc, workdir=workdir, port=port)
    run._reader = asyncio.ensure_future(proc.communicate())
    try:
        if target is None:  # a UAS: ready once it listens (an INVITE sent earlier is refused)
            await udp_port_bound(port, proc=proc)
        yield run
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(run._reader), 10)
