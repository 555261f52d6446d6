"""SIP trunks against SIPp playing the carrier.

- Outbound registration: hotline registers to the carrier's registrar, answers its digest
  challenge (checked by SIPp's ``verifyauth``) and ends up registered.
- Inbound: a call from the trunk to a DID reaches the entry point the DID maps to.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.interop.harness import SCENARIOS, SippResult, free_port, run_sipp, start_server

pytestmark = pytest.mark.interop


def _config(carrier_port: int) -> str:
    return f"""
[sip]
auth_algorithms = ["MD5"]

[[agents]]
id = "alice"
password = "alice-demo-1"

[entry_points]
"1000" = {{ kind = "hotline", name = "hotline" }}

[[trunks]]
name = "carrier"
address = "127.0.0.1:{carrier_port}"
username = "hotline-trunk"
password = "trunk-s3cret"
register = true
expires = 300
caller_id = "+18005550100"
caller_id_display = "Hotline"
dids = {{ "+1 800 555 0100" = "1000", "+33*" = "1000" }}
"""


def test_trunk_registers_with_digest_and_takes_did_calls(tmp_path: Path) -> None:
    carrier_port = free_port()
    holder: dict[str, SippResult] = {}

    def carrier() -> None:
        holder["registrar"] = run_sipp(
            ["-sf", str(SCENARIOS / "carrier_registrar.xml"), "-m", "1"],
            workdir=tmp_path / "carrier",
            target=None,
            timeout=30,
            local_port=carrier_port,
        )

    thread = threading.Thread(target=carrier)
    thread.start()
    time.sleep(0.5)
    server = start_server(tmp_path, _config(carrier_port))
    try:
        deadline = time.monotonic() + 20
        trunk = server.api("/api/trunks")[0]
        while trunk["state"] != "registered" and time.monotonic() < deadline:
            time.sleep(0.2)
            trunk = server.api("/api/trunks")[0]
        thread.join(timeout=40)
        assert trunk["state"] == "registered", (trunk, holder.get("registrar"))
        assert trunk["granted_seconds"] == 120  # the carrier's Contact expires wins
        assert holder["registrar"].successful == 1

        # Calls from the carrier to the DIDs (number formats differ) reach the hotline.
        for did in ("+18005550100", "+33142685300"):
            call = run_sipp(
                ["-sn", "uac", "-s", did, "-m", "1"],
                workdir=tmp_path / did,
                target=server.sip,
                timeout=20,
            )
            assert (call.successful, call.failed) == (1, 0), call.stdout + call.errors
        routed = [line for line in server.log_lines() if line.get("event") == "call_answered"]
        assert [r["dialled"] for r in routed] == ["1000", "1000"]
        unknown = run_sipp(
            ["-sn", "uac", "-s", "+4420000000", "-m", "1"],
            workdir=tmp_path / "unknown",
            target=server.sip,
            timeout=20,
        )
        assert unknown.successful == 0  # 404: no DID or entry point matches
    finally:
        assert server.stop() == 0


def test_outbound_call_through_trunk_presents_the_trunk_caller_id(tmp_path: Path) -> None:
    carrier_port = free_port()
    config = _config(carrier_port).replace("register = true", "register = false")
    holder: dict[str, SippResult] = {}

    def carrier() -> None:
        holder["callee"] = run_sipp(
            [
                "-sf",
                str(SCENARIOS / "carrier_callee.xml"),
                "-m",
                "1",
                "-mp",
                str(free_port(pair=True)),
            ],
            workdir=tmp_path / "carrier",
            target=None,
            timeout=30,
            local_port=carrier_port,
        )

    thread = threading.Thread(target=carrier)
    thread.start()
    server = start_server(tmp_path, config)
    try:
        time.sleep(0.5)
        outcome = server.api(
            "/api/dial",
            method="POST",
            body={"number": "+44 2079 0000", "trunk": "carrier", "hold_seconds": 0.3},
        )
        thread.join(timeout=40)
    finally:
        assert server.stop() == 0
    assert outcome["outcome"] == "answered", outcome
    assert outcome["caller_id"] == "+18005550100"
    callee = holder["callee"]
    assert (callee.successful, callee.failed) == (1, 0), callee.stdout + callee.errors
