"""Fuzz the SIP parser and the sans-IO endpoint: mutated messages in, and for each one
a reply, a drop, or a counted parse error; never an exception.

    python -m bench.fuzz_sip [--count 200000] [--max-seconds 120] [--seed 1]

Seeds are the RFC 4475 torture messages (shared/rfc4475/*.dat) and the project's own messages
(an INVITE with SDP, REGISTER with credentials, OPTIONS, in-dialog BYE/INFO/re-INVITE, CANCEL,
ACK, responses). Each case is a short sequence on a fresh endpoint: a valid INVITE that the
test's transaction user answers (so in-dialog mutations find a dialog), then a few mutated
messages, each from one of a few source addresses, with the endpoint's timers fired in between.
Mutations: flipped, inserted and deleted bytes, truncation, duplicated or dropped lines,
numbers replaced by extremes, header values swapped between seeds, line endings changed.

Outcomes per mutated message: ``reply`` (the endpoint sent something), ``parse_error`` (its
counter moved, nothing sent), ``event`` (handed to the transaction user), ``drop`` (nothing at
all: a retransmission past its source's allowance, a stray response, an ACK...). Any exception
is a failure: it is printed with the message that caused it and the run exits 1.

The baseline, measured in the same run, is the unmutated seeds through the same endpoint
sequence: mutated messages per second beside it. Bounded by ``--count`` and ``--max-seconds``;
the last line is one JSON object with the figures. ``tests/unit/sip/test_fuzz_endpoint.py``
runs the same mutator under hypothesis for a few hundred examples.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from media_gateway.sip import events as ev
from media_gateway.sip.endpoint import EndpointConfig, SipEndpoint
from media_gateway.sip.errors import TransactionError

ROOT = Path(__file__).resolve().parents[1]
RFC4475_DIRS = (ROOT.parent / "shared" / "rfc4475", Path("/work/shared/rfc4475"))

HERE = "127.0.0.1:5060"

_SDP = (
    "v=0\r\no=caller 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def _msg(start: str, headers: Sequence[str], body: str = "") -> bytes:
    lines = [start, *headers, f"Content-Length: {len(body.encode())}", "", body]
    return "\r\n".join(lines).encode()


def _common(method: str, cseq: int, branch: str, to_tag: str = "") -> list[str]:
    return [
        f"Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK{branch};rport",
        "Max-Forwards: 70",
        'From: "Caller" <sip:+15551234@192.0.2.10>;tag=fz1',
        f"To: <sip:1000@{HERE}>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: fuzz-call-1@192.0.2.10",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:caller@192.0.2.10:5070>",
    ]


def own_seeds() -> list[bytes]:
    """The project's own kinds of message (dialog ones carry the To-tag ``TAG``, replaced by
    the endpoint's real tag when a case runs them)."""
    invite = _msg(
        f"INVITE sip:1000@{HERE} SIP/2.0",
        [*_common("INVITE", 1, "inv1"), "Content-Type: application/sdp"],
        _SDP,
    )
    return [
        invite,
        _msg(
            f"REGISTER sip:{HERE} SIP/2.0",
            [
                *_common("REGISTER", 2, "reg1"),
                "Expires: 3600",
                'Authorization: Digest username="alice", realm="hotline", nonce="abc", '
                f'uri="sip:{HERE}", response="0123456789abcdef0123456789abcdef", '
                'algorithm=MD5, qop=auth, nc=00000001, cnonce="xyz"',
            ],
        ),
        _msg(f"OPTIONS sip:1000@{HERE} SIP/2.0", [*_common("OPTIONS", 3, "opt1"), "Accept: */*"]),
        _msg(f"BYE sip:hotline@{HERE} SIP/2.0", _common("BYE", 2, "bye1", "TAG")),
        _msg(
            f"INFO sip:hotline@{HERE} SIP/2.0",
            [*_common("INFO", 3, "info1", "TAG"), "Content-Type: application/dtmf-relay"],
            "Signal=5\r\nDuration=160\r\n",
        ),
        _msg(
            f"INVITE sip:hotline@{HERE} SIP/2.0",
            [*_common("INVITE", 4, "reinv1", "TAG"), "Content-Type: application/sdp"],
            _SDP.replace("a=rtpmap:101", "a=sendonly\r\na=rtpmap:101"),
        ),
        _msg(f"CANCEL sip:1000@{HERE} SIP/2.0", _common("CANCEL", 1, "inv1")),
        _msg(f"ACK sip:hotline@{HERE} SIP/2.0", _common("ACK", 1, "ack1", "TAG")),
        _msg(
            f"REFER sip:hotline@{HERE} SIP/2.0",
            [*_common("REFER", 5, "ref1", "TAG"), f"Refer-To: <sip:2000@{HERE}>"],
        ),
        _msg(
            f"MESSAGE sip:1000@{HERE} SIP/2.0",
            [*_common("MESSAGE", 6, "msg1"), "Content-Type: text/plain"],
            "hello",
        ),
        _msg("SIP/2.0 200 OK", _common("INVITE", 1, "out1", "far1"), _SDP),
        _msg("SIP/2.0 180 Ringing", _common("INVITE", 1, "out1", "far1")),
        b"\r\n\r\n",
    ]


def rfc4475_seeds() -> list[bytes]:
    for directory in RFC4475_DIRS:
        if directory.is_dir():
            return [p.read_bytes() for p in sorted(directory.glob("*.dat"))]
    return []


def seeds() -> list[bytes]:
    return own_seeds() + rfc4475_seeds()


_NUMBER = re.compile(rb"\d+")
_EXTREMES = (
    b"0",
    b"-1",
    b"4294967296",
    b"99999999999999999999999999",
    b"",
    b"1e9",
    b"0x10",
)
_JUNK = (b"\x00", b"\xff", b"\r", b"\n", b"\r\n", b":", b";", b",", b'"', b"<", b">", b" ", b"%")


def mutate(data: bytes, rng: random.Random, pool: Sequence[bytes], rounds: int) -> bytes:
    """``rounds`` random mutations of ``data`` (``pool``: other messages to borrow lines from)."""
    for _ in range(rounds):
        kind = rng.randrange(10)
        n = len(data)
        if kind == 0 and n:  # flip bytes
            b = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(n)] = rng.randrange(256)
            data = bytes(b)
        elif kind == 1:  # insert junk
            at = rng.randint(0, n)
            junk = rng.choice(_JUNK) * rng.choice((1, 1, 2, 100, 5000))
            data = data[:at] + junk + data[at:]
        elif kind == 2 and n:  # delete a range
            at = rng.randrange(n)
            data = data[:at] + data[at + rng.randint(1, 64) :]
        elif kind == 3 and n:  # truncate
            data = data[: rng.randrange(n)]
        elif kind in (4, 5):  # drop, duplicate or swap lines
            lines = data.split(b"\r\n")
            i = rng.randrange(len(lines))
            op = rng.randrange(3)
            if op == 0:
                del lines[i]
            elif op == 1:
                lines.insert(i, lines[i] * rng.choice((1, 1, 50)))
            else:
                j = rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
            data = b"\r\n".join(lines)
        elif kind == 6:  # a number becomes an extreme
            matches = list(_NUMBER.finditer(data))
            if matches:
                m = rng.choice(matches)
                data = data[: m.start()] + rng.choice(_EXTREMES) + data[m.end() :]
        elif kind == 7 and pool:  # borrow a line from another message
            other = rng.choice(pool).split(b"\r\n")
            lines = data.split(b"\r\n")
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(other))
            data = b"\r\n".join(lines)
        elif kind == 8:  # line endings
            data = data.replace(b"\r\n", rng.choice((b"\n", b"\r", b"\r\n\r\n", b" \r\n")), 1)
        else:  # change the method or the status
            head, sep, rest = data.partition(b" ")
            new = rng.choice((b"INVITE", b"ACK", b"BYE", b"FOO", b"SIP/2.0", b"invite", b""))
            data = new + sep + rest if sep else data + head
    return data


SOURCES = (("192.0.2.10", 5070), ("192.0.2.11", 5070), ("198.51.100.7", 5060))


class Case:
    """One fresh endpoint with an answered call, fed messages one at a time."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = 1000.0
        self.ep = SipEndpoint(EndpointConfig(host="127.0.0.1", port=5060), rng=rng)
        self.tag = "TAG"
        self.feed(own_seeds()[0], SOURCES[0])  # the call the in-dialog seeds belong to
        for call in self.ep.active_calls():
            if call.local_tag:
                self.tag = call.local_tag

    def feed(self, data: bytes, source: tuple[str, int]) -> str:
        """One message in; the outcome: ``reply``, ``parse_error``, ``event`` or ``drop``."""
        ep = self.ep
        data = data.replace(b"tag=TAG", b"tag=" + self.tag.encode())
        errors = ep.stats["parse_errors"]
        self.now += self.rng.choice((0.001, 0.01, 0.5, 4.0, 40.0))
        ep.receive(data, source, self.now, transport=self.rng.choice(("udp", "udp", "tcp")))
        outcome = "drop"
        for event in ep.events():
            outcome = "event"
            self.answer(event)
        if ep.datagrams_to_send():
            outcome = "reply"
        elif ep.stats["parse_errors"] > errors and outcome == "drop":
            outcome = "parse_error"
        deadline = ep.next_deadline()
        if deadline is not None and deadline <= self.now + 1.0:
            ep.handle_timer(deadline)
            for event in ep.events():
                self.answer(event)
            ep.datagrams_to_send()
        return outcome

    def answer(self, event: ev.SipEvent) -> None:
        """A transaction user that answers what it is handed (how the user agent would)."""
        status = self.rng.choice((200, 180, 486, 503, 404))
        try:
            if isinstance(event, ev.InviteReceived):
                body = _SDP.encode() if status == 200 else b""
                self.ep.respond(event.call, status, body=body, now=self.now)
            elif isinstance(event, ev.RequestReceived):
                self.ep.respond(event.transaction, max(status, 200), now=self.now)
        except TransactionError:
            pass  # the TU asked for what the transaction cannot send: the TU's error, not input


def run(
    count: int, max_seconds: float, seed: int, *, mutated: bool = True
) -> tuple[Counter[str], int, float, list[str]]:
    """Feed up to ``count`` messages within ``max_seconds``: (outcomes, messages, seconds,
    failures)."""
    rng = random.Random(seed)
    pool = seeds()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    done = 0
    start = time.perf_counter()
    while done < count and time.perf_counter() - start < max_seconds:
        case = Case(random.Random(rng.getrandbits(64)))
        for _ in range(rng.randint(1, 6)):
            data = rng.choice(pool)
            if mutated:
                data = mutate(data, rng, pool, rng.randint(1, 4))
            try:
                outcomes[case.feed(data, rng.choice(SOURCES))] += 1
            except Exception:
                failures.append(f"{data!r}\n{traceback.format_exc()}")
                outcomes["exception"] += 1
            done += 1
    return outcomes, done, time.perf_counter() - start, failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--count", type=int, default=200_000, help="mutated messages (at most)")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="time bound of the run")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    base_outcomes, base_n, base_s, base_fail = run(
        min(args.count, 20_000), args.max_seconds / 10, args.seed, mutated=False
    )
    outcomes, n, seconds, failures = run(args.count, args.max_seconds, args.seed)
    base_rate = base_n / base_s if base_s else 0.0
    rate = n / seconds if seconds else 0.0
    print(f"seeds: {len(seeds())} ({len(rfc4475_seeds())} from RFC 4475)")
    print(f"baseline (unmutated seeds): {base_n} messages in {base_s:.1f} s, {base_rate:,.0f}/s")
    print(f"fuzz (mutated):             {n} messages in {seconds:.1f} s, {rate:,.0f}/s")
    for outcome, k in sorted(outcomes.items()):
        print(f"  {outcome:12} {k:8} ({100 * k / max(n, 1):.1f} %)")
    for failure in (base_fail + failures)[:5]:
        print("FAILURE:", failure, file=sys.stderr)
    summary = {
        "bench": "fuzz_sip",
        "seed": args.seed,
        "messages": n,
        "seconds": round(seconds, 2),
        "messages_per_s": round(rate),
        "baseline_messages_per_s": round(base_rate),
        "outcomes": dict(sorted(outcomes.items())),
        "baseline_outcomes": dict(sorted(base_outcomes.items())),
        "exceptions": len(failures) + len(base_fail),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(summary, sort_keys=True))
    return 1 if failures or base_fail else 0


if __name__ == "__main__":
    sys.exit(main())
