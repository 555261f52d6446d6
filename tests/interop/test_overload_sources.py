"""Issue 11, overload that one source cannot trigger, and the set-up bound: a running
``hotline serve`` (the demo configuration: 1000 is the hotline number) inside a network
namespace with only loopback up, real SIPp callers, and a hostile Python socket.

* **The OPTIONS trickle.** One OPTIONS with a fixed branch, resent 60 times a second from
  127.0.0.9: before, every resend counted as an absorbed retransmission in one global rate, the
  rate passed 50/s, and the overload flag made the service refuse every new call with 503.
  Now that source's retransmissions count against it alone: real calls from SIPp at 127.0.0.2,
  placed while the trickle runs, all complete.
* **600 calls/s offered to the hotline number** for 3 s: before, every call got 100 Trying and
  then queued, the 200 OKs arriving after a median of 4.8 s and no 503 at all. Now every call is
  answered quickly or refused at once with 503: no 200 OK comes later than 2 s after its INVITE
  (SIPp's per-call response times, ``-trace_rtt``), and no 503 later than 1 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.harness import SCENARIOS, run_sipp, start_server

pytestmark = [pytest.mark.interop, pytest.mark.netns, pytest.mark.serial]

SIP_PORT = 5060
ROOT = Path(__file__).resolve().parents[2]


def demo_config(sip_extra: str = "") -> str:
    """The demo configuration, runnable from a temporary directory, with ``sip_extra`` lines
    added to its ``[sip]`` table."""
    text = (ROOT / "hotline" / "demo.toml").read_text(encoding="utf-8")
    staff = ROOT / "hotline" / "demo-staff.toml"
    text = text.replace('staff_file = "demo-staff.toml"', f'staff_file = "{staff}"', 1)
    assert "\n[sip]\n" in text
    return text.replace("\n[sip]\n", f"\n[sip]\n{sip_extra}\n", 1)


TRICKLE = r"""
import json, socket, sys, time
port, seconds, rate = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
msg = (
    f"OPTIONS sip:hotline@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.9:5099;branch=z9hG4bK-trickle-fixed;rport\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.9>;tag=trickle\r\n"
    f"To: <sip:hotline@127.0.0.1:{port}>\r\nCall-ID: trickle@127.0.0.9\r\nCSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
).encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.9", 5099))
s.setblocking(False)
sent = replies = 0
start = time.monotonic()
while (now := time.monotonic()) - start < seconds:
    s.sendto(msg, ("127.0.0.1", port))
    sent += 1
    if sent == 1:
        print("started", flush=True)
    try:
        while s.recv(65535):
            replies += 1
    except BlockingIOError:
        pass
    time.sleep(max(0.0, start + sent / rate - time.monotonic()))
print(json.dumps({"sent": sent, "replies": replies}), flush=True)
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("this test creates a network namespace and must run as root (CI does)")
    name = f"hl-ovl-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:

        def ns(*cmd: str) -> None:
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)

        ns("ip", "link", "set", "lo", "up")
        for extra in ("127.0.0.2/32", "127.0.0.9/32"):  # the callers' and the trickle's
            ns("ip", "addr", "add", extra, "dev", "lo")
        links = subprocess.run(
            ["ip", "netns", "exec", name, "ip", "-o", "link"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _rtts(workdir: Path) -> dict[str, list[float]]:
    """SIPp's per-call response times (ms) by rtd name, from every ``*_rtt.csv``."""
    out: dict[str, list[float]] = {}
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.strip().split(";")
            if len(parts) >= 3 and parts[1]:
                out.setdefault(parts[2], []).append(float(parts[1]))
    return out


def test_options_trickle_from_one_source_does_not_refuse_other_callers(
    tmp_path: Path, netns: str
) -> None:
    # The other overload signal, event-loop lag, is made lenient: a machine shared with other
    # test runs can stall this process for a few hundred ms, which is not what is tested here.
    config = demo_config("max_loop_lag_ms = 3000")
    server = start_server(tmp_path, config, sip_port=SIP_PORT, netns=netns)
    trickle = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", TRICKLE, str(SIP_PORT), "6", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert trickle.stdout is not None
        assert trickle.stdout.readline().strip() == "started"
        # the calls start once the service has limited the trickle's source (before the
        # change, by then the global rate had long passed its threshold)
        deadline = time.monotonic() + 10
        while not any(x.get("event") == "sip_source_limited" for x in server.log_lines()):
            assert time.monotonic() < deadline, "the trickle's source was never limited"
            time.sleep(0.05)
        result = run_sipp(
            [
                "-sf",
                str(SCENARIOS / "overload_caller.xml"),
                "-s",
                "1000",
                "-i",
                "127.0.0.2",
                "-r",
                "10",
                "-m",
                "30",
                "-trace_rtt",
                "-rtt_freq",
                "1",
            ],
            workdir=tmp_path / "sipp-trickle",
            target=f"127.0.0.1:{SIP_PORT}",
            timeout=40,
            netns=netns,
        )
        out, _ = trickle.communicate(timeout=20)
        counts = json.loads(out.strip().splitlines()[-1])
        rtts = _rtts(tmp_path / "sipp-trickle")
        assert result.successful == 30 and result.failed == 0, result.stdout + result.errors
        assert "refused" not in rtts, f"{len(rtts['refused'])} real calls refused with 503"
        assert len(rtts.get("answered", [])) == 30
        # the trickle's source was limited: most of its resends went unanswered
        assert counts["sent"] > 200 and counts["replies"] < counts["sent"] / 2, counts
    finally:
        if trickle.poll() is None:
            trickle.kill()
            trickle.wait()
        server.stop()
    lines = server.log_lines()
    limited = [x for x in lines if x.get("event") == "sip_source_limited"]
    assert [(x["source"], x["reason"]) for x in limited] == [("127.0.0.9", "retransmission_rate")]
    assert not [x for x in lines if x.get("event") == "overload" and x.get("overloaded")]


def test_600_calls_per_second_are_answered_quickly_or_refused(tmp_path: Path, netns: str) -> None:
    server = start_server(tmp_path, sip_port=SIP_PORT, netns=netns)
    try:
        result = run_sipp(
            [
                "-sf",
                str(SCENARIOS / "overload_caller.xml"),
                "-s",
                "1000",
                "-i",
                "127.0.0.2",
                "-r",
                "600",
                "-m",
                "1800",
                "-l",
                "5000",
                "-trace_rtt",
                "-rtt_freq",
                "1",
            ],
            workdir=tmp_path / "sipp-600",
            target=f"127.0.0.1:{SIP_PORT}",
            timeout=60,
            netns=netns,
        )
        rtts = _rtts(tmp_path / "sipp-600")
        answered, refused = rtts.get("answered", []), rtts.get("refused", [])
        assert len(answered) + len(refused) == 1800, (result.stdout, result.errors[-2000:])
        assert result.failed == 0, result.stdout + result.errors[-2000:]
        assert answered, "no call answered at all"
        late = sorted(t for t in answered if t > 2000)
        assert not late, f"{len(late)} of {len(answered)} 200 OKs came > 2 s after the INVITE"
        assert max(refused, default=0) <= 1000, "a 503 that waited"
        # the service is still there for the next caller
        after = run_sipp(
            ["-sf", str(SCENARIOS / "overload_caller.xml"), "-s", "1000", "-m", "1"],
            workdir=tmp_path / "sipp-after",
            target=f"127.0.0.1:{SIP_PORT}",
            timeout=30,
            netns=netns,
        )
        assert after.successful == 1, after.stdout
    finally:
        server.stop()
    print(
        f"answered {len(answered)}, refused {len(refused)}; "
        f"200 OK p50 {sorted(answered)[len(answered) // 2]:.0f} ms, max {max(answered):.0f} ms"
    )
