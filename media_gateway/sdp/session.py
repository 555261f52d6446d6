"""SDP (RFC 4566) parsing and serialisation, as plain data.

Tolerant where real phones differ (unknown lines kept in order, LF-only line ends accepted,
trailing whitespace ignored), strict where meaning depends on it: ``v=0`` first, an ``o=`` and
``s=`` line, ``m=`` lines with a numeric port and a format list, and an address (``c=``) for
every media that has a non-zero port, at session or media level.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class SdpError(ValueError):
    """An SDP body that cannot be used; the message names the line."""


@dataclass(slots=True)
class Origin:
    username: str = "-"
    session_id: str = "0"
    version: int = 0
    net_type: str = "IN"
    addr_type: str = "IP4"
    address: str = "127.0.0.1"

    def to_line(self) -> str:
        return (
            f"o={self.username} {self.session_id} {self.version} {self.net_type} "
            f"{self.addr_type} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    net_type: str = "IN"
    addr_type: str = "IP4"
    address: str = "127.0.0.1"

    def to_line(self) -> str:
        return f"c={self.net_type} {self.addr_type} {self.address}"


DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(slots=True)
class Media:
    """One ``m=`` section: media, port, protocol, formats and its attribute lines."""

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: Connection | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    """``a=`` lines as (name, value); value None for flags such as ``a=sendrecv``."""
    other: list[str] = field(default_factory=list)
    """Other lines of the section (``b=``, ``i=``, ``k=``...), kept verbatim."""

    def attribute(self, name: str) -> str | None:
        for n, v in self.attributes:
            if n == name:
                return v if v is not None else ""
        return None

    def attribute_values(self, name: str) -> list[str]:
        return [v or "" for n, v in self.attributes if n == name]

    @property
    def direction(self) -> str:
        for n, v in self.attributes:
            if v is None and n in DIRECTIONS:
                return n
        return "sendrecv"

    def set_direction(self, direction: str) -> None:
        self.attributes = [
            (n, v) for n, v in self.attributes if not (v is None and n in DIRECTIONS)
        ]
        self.attributes.append((direction, None))

    def rtpmap(self) -> dict[int, tuple[str, int, str]]:
        """payload type -> (encoding name, clock rate, channels/params) from ``a=rtpmap``."""
        out: dict[int, tuple[str, int, str]] = {}
        for value in self.attribute_values("rtpmap"):
            pt_text, _, rest = value.partition(" ")
            name, _, tail = rest.strip().partition("/")
            rate_text, _, params = tail.partition("/")
            try:
                out[int(pt_text)] = (name, int(rate_text), params)
            except ValueError:
                continue
        return out

    def to_lines(self) -> list[str]:
        """The section in RFC 4566 §5 order: m, i, c, b, k, a (other kept lines in place)."""
        lines = [f"m={self.media} {self.port} {self.proto} {' '.join(self.formats)}".rstrip()]
        lines.extend(line for line in self.other if line[:1] == "i")
        if self.connection is not None:
            lines.append(self.connection.to_line())
        lines.extend(line for line in self.other if line[:1] != "i")
        for n, v in self.attributes:
            lines.append(f"a={n}" if v is None else f"a={n}:{v}")
        return lines


@dataclass(slots=True)
class SessionDescription:
    origin: Origin = field(default_factory=Origin)
    name: str = "-"
    connection: Connection | None = None
    timing: str = "0 0"
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    """Other session-level lines (``i=``, ``u=``, ``e=``, ``b=``...), kept verbatim."""

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        lines = [line.rstrip("\r").rstrip() for line in text.split("\n")]
        lines = [line for line in lines if line]
        if not lines or lines[0] != "v=0":
            raise SdpError("line 1: expected v=0")
        sd = cls()
        current: Media | None = None
        seen_origin = False
        for number, line in enumerate(lines[1:], start=2):
            if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
                raise SdpError(f"line {number}: expected <type>=<value>, got {line[:40]!r}")
            kind, value = line[0], line[2:]
            if kind == "m":
                parts = value.split()
                if len(parts) < 3:
                    raise SdpError(f"line {number}: m= needs media, port, proto and formats")
                port_text = parts[1].split("/")[0]
                if not port_text.isdigit() or int(port_text) > 65535:
                    raise SdpError(f"line {number}: bad media port {parts[1]!r}")
                current = Media(parts[0], int(port_text), parts[2], parts[3:])
                sd.media.append(current)
            elif kind == "o":
                parts = value.split()
                if len(parts) != 6:
                    raise SdpError(f"line {number}: o= needs 6 fields")
                try:
                    version = int(parts[2])
                except ValueError:
                    raise SdpError(f"line {number}: o= version is not a number") from None
                sd.origin = Origin(parts[0], parts[1], version, parts[3], parts[4], parts[5])
                seen_origin = True
            elif kind == "c":
                parts = value.split()
                if len(parts) != 3:
                    raise SdpError(f"line {number}: c= needs network type, address type, address")
                conn = Connection(parts[0], parts[1], parts[2].split("/")[0])
                if current is None:
                    sd.connection = conn
                else:
                    current.connection = conn
            elif kind == "a":
                name, sep, val = value.partition(":")
                attr = (name, val if sep else None)
                (current.attributes if current is not None else sd.attributes).append(attr)
            elif kind == "s" and current is None:
                sd.name = value
            elif kind == "t" and current is None:
                sd.timing = value
            else:
                (current.other if current is not None else sd.other).append(line)
        if not seen_origin:
            raise SdpError("no o= line")
        for i, m in enumerate(sd.media):
            if m.port != 0 and m.connection is None and sd.connection is None:
                raise SdpError(f"media {i + 1} ({m.media}) has no connection address (c=)")
        return sd

    def to_bytes(self) -> bytes:
        """Serialise in RFC 4566 §5 order (v o s i u e p c b t r z k a, then media), CRLF."""
        lines = ["v=0", self.origin.to_line(), f"s={self.name or '-'}"]
        lines.extend(line for line in self.other if line[:1] in "iuep")
        if self.connection is not None:
            lines.append(self.connection.to_line())
        lines.extend(line for line in self.other if line[:1] == "b")
        lines.append(f"t={self.timing}")
        lines.extend(line for line in self.other if line[:1] not in "iuepb")
        for n, v in self.attributes:
            lines.append(f"a={n}" if v is None else f"a={n}:{v}")
        for m in self.media:
            lines.extend(m.to_lines())
        return ("\r\n".join(lines) + "\r\n").encode()

    def connection_for(self, media: Media) -> Connection | None:
        return media.connection or self.connection

    def session_direction(self) -> str | None:
        for n, v in self.attributes:
            if v is None and n in DIRECTIONS:
                return n
        return None
