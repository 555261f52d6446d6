"""The RFC 4475 torture messages against a running ``hotline serve``, inside a network namespace
with only loopback up, so that nothing can leave the machine even on a bug (the messages name
example.com hosts and 192.0.2.x addresses).

Each message gets the answer RFC 4475 (and shared/rfc4475/INDEX.md) asks of a UAS, or is dropped
when no answer is possible; after every one, an OPTIONS still gets 200 and the process lives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.harness import start_server

RFC4475 = Path(__file__).resolve().parents[3] / "shared" / "rfc4475"
if not RFC4475.is_dir():
    RFC4475 = Path("/work/shared/rfc4475")

# file -> the set of acceptable final statuses (None: dropped, no answer possible or wanted).
EXPECTED: dict[str, set[int | None]] = {
    # §3.1.1 valid messages: processed normally (not a 400).
    "wsinv": {404},
    "intmeth": {501},
    "esc01": {404},
    "escnull": {401},
    "esc02": {501},
    "lwsdisp": {200},
    "longreq": {404},
    "dblreq": {401},
    "semiuri": {200},
    "transports": {200},
    "mpart01": {405},
    "unreason": {None},
    "noreason": {None},
    # §3.1.2 invalid messages.
    "badinv01": {400},
    "clerr": {400},
    "ncl": {400},
    "scalar02": {400},
    "scalarlg": {None},
    "quotbal": {400},
    "ltgtruri": {400},
    "lwsruri": {400},
    "lwsstart": {400, 404},
    "trws": {400, 200},
    "escruri": {400, 404},
    "baddate": {404},
    "regbadct": {400},
    "badaspec": {400, 200},
    "baddn": {400, 200},
    "badvers": {505},
    "mismatch01": {400},
    "mismatch02": {501, 400},
    "bigcode": {None},
    # §3.2 transaction identifier.
    "badbranch": {400, 200},
    # §3.3 application semantics.
    "insuf": {400, None},
    "unkscm": {416, None},
    "novelsc": {416},
    "unksm2": {400},
    "bext01": {420},
    "invut": {415},
    "regaut01": {401},
    "multi01": {400},
    "mcl01": {400},
    "bcast": {None},
    "zeromf": {200},
    "cparam01": {401},
    # cparam02 and regescrt reuse the branch and sent-by of cparam01 and escnull, and unkscm
    # those of novelsc, each sent before them: RFC 3261 §17.2.3 makes them retransmissions of
    # those transactions, so the cached answer goes to the first sender, not to them.
    "cparam02": {401, None},
    "regescrt": {401, None},
    "sdp01": {406, 400},
    # §3.4 RFC 2543 syntax: accepted.
    "inv2543": {404},
}


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("this test creates a network namespace and must run as root (CI does)")
    name = f"hl-torture-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
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


@pytest.mark.netns
@pytest.mark.interop
def test_torture_messages_in_loopback_only_namespace(tmp_path: Path, netns: str) -> None:
    assert sorted(p.stem for p in RFC4475.glob("*.dat")) == sorted(EXPECTED)
    server = start_server(tmp_path, sip_port=5060, netns=netns)
    try:
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                netns,
                sys.executable,
                "-m",
                "tests.interop.torture_client",
                "5060",
                str(RFC4475),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.returncode == 0, proc.stderr
        results = json.loads(proc.stdout)
        assert server.proc.poll() is None, "hotline serve died during the torture run"
    finally:
        rc = server.stop()
    wrong = {name: r for name, r in results.items() if r["final"] not in EXPECTED[name]}
    assert not wrong, f"unexpected answers: {wrong}"
    sick = {name: r for name, r in results.items() if r["health_after"] != 200}
    assert not sick, f"OPTIONS failed after: {sick}"
    assert rc == 0
    # Nothing was ever sent to a name or to an address taken from a message.
    logs = server.log_path.read_text()
    assert "refused_send_to_name" not in logs
    assert "Traceback" not in logs
