"""Run inside a loopback-only network namespace: send each RFC 4475 message to hotline over
UDP from 127.0.0.1 and print, as JSON, the final status each one got (or null when dropped).

    python -m tests.interop.torture_client SERVER_PORT DIR
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path


def first_final(sock: socket.socket, wait: float) -> tuple[int | None, list[int]]:
    deadline = time.monotonic() + wait
    seen: list[int] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, seen
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return None, seen
        parts = data.split(b" ", 2)
        if len(parts) >= 2 and parts[0] == b"SIP/2.0" and parts[1].isdigit():
            code = int(parts[1])
            seen.append(code)
            if code >= 200:
                return code, seen


def options(port: int, sock: socket.socket, n: int) -> int | None:
    local = sock.getsockname()[1]
    msg = (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-health-{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=h{n}\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: health-{n}@127.0.0.1\r\n"
        f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    sock.sendto(msg, ("127.0.0.1", port))
    code, _ = first_final(sock, 2.0)
    return code


def main() -> int:
    port = int(sys.argv[1])
    folder = Path(sys.argv[2])
    results: dict[str, object] = {}
    for n, path in enumerate(sorted(folder.glob("*.dat"))):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.sendto(path.read_bytes(), ("127.0.0.1", port))
            code, seen = first_final(sock, 0.6)
            health = options(port, sock, n)
        results[path.stem] = {"final": code, "seen": seen, "health_after": health}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
