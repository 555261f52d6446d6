"""``hotline agent``: the agent's desk in a terminal, with its own SIP phone.

    hotline agent --server 127.0.0.1:5060 --http http://127.0.0.1:8080 --user alice \\
        [--password-stdin] [--play FILE|tone:440|silence] [--record FILE] [--script FILE]

It signs in to the staff API (a bearer token; the password from ``--password-stdin``, the
``HOTLINE_PASSWORD`` environment variable, or asked on the terminal), registers its phone
(:mod:`agent_client.phone`) with the same id and password, follows the event stream for its
state, offers, cases and queues, and takes one command per line (a letter and Enter; see
:data:`HELP`): plain text, so it works in any terminal, under tmux, with keys sent by
``tmux send-keys``, and from a pipe or a ``--script`` file. Everything shown comes from the
engine (the stream and the API) or from the phone itself; nothing is guessed. docs/terminal-agent.md
is the user's guide.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import shlex
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from agent_client.phone import AudioSource, Phone, PhoneEvent, Recorder
from agent_client.staff import StaffApiError, StaffClient

PASSWORD_ENV = "HOTLINE_PASSWORD"

HELP = """\
commands (a letter or word, then Enter):
  r            ready for calls          p REASON   pause (p alone lists the reasons)
  a            answer the ringing call  d          decline it
  h            hold the caller          u          resume (back to the caller)
  m            mute / unmute            k DIGITS   send keys to the caller (0-9 * # A-D)
  t TARGET     transfer (blind) to a colleague's id or extension, or a queue
  x            hang up                  e          end wrap-up
  w [SECONDS]  more wrap-up (30)        o          log out of the queues
  s            show the screen again    ?          this help
  q            quit (logs the phone out)
scripts also: wait STATE [SECONDS] (ringing, on_call, wrap_up, ready, paused, logged_out),
  sleep SECONDS"""

STATE_LABEL = {
    "logged_out": "LOGGED OUT",
    "idle": "READY",
    "paused": "PAUSED",
    "reserved": "RINGING",
    "on_call": "ON CALL",
    "wrap_up": "WRAP-UP",
}
WAIT_STATES = {
    "ringing": "reserved",
    "on_call": "on_call",
    "wrap_up": "wrap_up",
    "ready": "idle",
    "idle": "idle",
    "paused": "paused",
    "logged_out": "logged_out",
}


HIDDEN_VARS = frozenset({"case_id", "callback_uri"})
"""Flow variables the service keeps for itself (not the caller's choices)."""


def _clock(seconds: float | None) -> str:
    s = round(seconds or 0)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def _time(iso: str | None) -> str:
    if not iso:
        return ""
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%H:%M:%S UTC")
    return iso


def _ivr_text(ivr: list[dict[str, Any]] | None, vars_: dict[str, Any] | None) -> str:
    parts = []
    for step in ivr or []:
        node, digits = step.get("node", ""), step.get("digits", "")
        to = step.get("to") or step.get("var") or ""
        parts.append(f"{node} {digits}" + (f" -> {to}" if to else ""))
    shown = {k: v for k, v in (vars_ or {}).items() if k not in HIDDEN_VARS and k[:1] != "_"}
    if shown:
        parts.append(", ".join(f"{k}={v}" for k, v in sorted(shown.items())))
    return "; ".join(parts)


class TerminalAgent:
    """The screen's state (from the engine and the phone), the commands, the loop."""

    def __init__(
        self,
        *,
        staff: StaffClient,
        password: str,
        server: tuple[str, int],
        source: AudioSource,
        recorder: Recorder,
        local_host: str | None = None,
        out: TextIO = sys.stdout,
    ) -> None:
        self.staff = staff
        self.user = staff.user
        self.password = password
        self.server = server
        self.source = source
        self.recorder = recorder
        self.local_host = local_host
        self.out = out
        self.phone: Phone | None = None
        self.name = ""
        self.state = "logged_out"
        self.reason = ""
        self.queues: dict[str, dict[str, Any]] = {}
        self.offer: dict[str, Any] | None = None
        self.ivr_steps: tuple[str, list[dict[str, Any]]] = ("", [])
        """The menu keys of the last offer (call id, steps): shown on the call too."""
        self.ringing_caller = ""
        """The caller on the phone's ringing INVITE (before or without an offer event)."""
        self.call: dict[str, Any] | None = None
        self.case: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        """The ringing caller's earlier cases (screen pop)."""
        self.today: dict[str, Any] | None = None
        self.wrap_up_ends: str | None = None
        self.connected = False
        self.reasons: list[str] = []
        self.quit = asyncio.Event()
        self._changed = asyncio.Event()
        self._last = ""
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- output ----------------------------------------------------------------------------------

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def render(self) -> str:
        phone = self.phone
        registered = phone is not None and phone.registered
        lines = [
            f"== {self.user} ({self.name or '?'}) | state: {STATE_LABEL.get(self.state, self.state)}"
            + (f" ({self.reason})" if self.reason else "")
            + f" | phone: {'registered' if registered else 'NOT registered'}"
            + ("" if self.connected else " | events: reconnecting")
        ]
        if self.queues:
            lines.append(
                "   queues: "
                + ", ".join(
                    f"{q} {int(s.get('waiting', 0))} waiting"
                    for q, s in sorted(self.queues.items())
                )
            )
        if self.offer is not None:
            o = self.offer
            case = f" | case #{o['case_id']}" if o.get("case_id") else ""
            lines.append(
                f"   RINGING: caller {o.get('caller') or self.ringing_caller or '?'}"
                f" | queue {o.get('queue') or '-'}{case}"
                f" | rings {int(o.get('ring_timeout') or 0)} s   [a] answer  [d] decline"
            )
            ivr = _ivr_text(o.get("ivr"), o.get("vars"))
            if ivr:
                lines.append(f"   IVR: {ivr}")
            if self.history:
                lines.append(
                    "   earlier cases: "
                    + ", ".join(f"#{c['id']} {c['status']}" for c in self.history[:5])
                )
        elif phone is not None and phone.call is not None and not phone.answered:
            lines.append(
                f"   phone ringing: caller {self.ringing_caller or '?'}   [a] answer  [d] decline"
            )
        if self.call is not None and self.state == "on_call":
            c = self.call
            flags = "".join(
                f" [{f}]" for f, on in (("held", c.get("held")), ("muted", c.get("muted"))) if on
            )
            lines.append(
                f"   ON CALL with {c.get('caller')} | queue {c.get('queue') or '-'}"
                f" | waited {int(c.get('waited') or 0)} s | since {_time(c.get('since'))}{flags}"
            )
            steps = self.ivr_steps[1] if self.ivr_steps[0] == c.get("call_id") else None
            ivr = _ivr_text(steps, c.get("ivr"))
            if ivr:
                lines.append(f"   IVR: {ivr}")
            t = c.get("transfer")
            if t:
                lines.append(f"   transfer to {t.get('to')}: {t.get('state')}")
        if self.case is not None:
            k = self.case
            lines.append(
                f"   case #{k['id']}: {k.get('status')} | owner {k.get('owner') or 'nobody'}"
                f" | type {k.get('type')} | caller {k.get('caller')}"
            )
        if self.state == "wrap_up":
            left = ""
            with contextlib.suppress(ValueError, TypeError):
                ends = datetime.fromisoformat(str(self.wrap_up_ends))
                left = f" ({max(0, round((ends - datetime.now(UTC)).total_seconds()))} s left)"
            lines.append(
                f"   WRAP-UP until {_time(self.wrap_up_ends) or '?'}{left}"
                "   [e] end  [w SECONDS] more time"
            )
        if self.today is not None:
            d = self.today
            occ = d.get("occupancy")
            lines.append(
                f"   today: {d.get('offers', 0)} offered, {d.get('answered', 0)} answered,"
                f" {d.get('missed', 0)} missed, {d.get('rejected', 0)} declined"
                f" | talk {_clock(d.get('talk_seconds'))}, wrap-up {_clock(d.get('wrap_up_seconds'))},"
                f" ready {_clock(d.get('ready_seconds'))}, paused {_clock(d.get('pause_seconds'))}"
                + (f" | occupancy {occ:.0%}" if isinstance(occ, int | float) else "")
            )
        return "\n".join(lines)

    def changed(self) -> None:
        self._changed.set()

    def paint(self) -> None:
        """Print the screen if it differs from the last one printed."""
        text = self.render()
        if text != self._last:
            self._last = text
            self.say(text)

    async def _painter(self) -> None:
        """Print the screen when it changed (once per burst of events)."""
        while True:
            await self._changed.wait()
            await asyncio.sleep(0.05)  # fold a burst of events into one screen
            self._changed.clear()
            self.paint()

    # -- the engine's side -----------------------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def refresh_agent(self) -> None:
        try:
            info = await self.staff.call("GET", self.staff.agent())
        except StaffApiError as exc:
            self.say(f"! cannot read my state: {exc}")
            return
        self.name = info.get("name", "")
        self.state = info.get("state", self.state)
        self.reason = info.get("reason", "")
        self.wrap_up_ends = info.get("wrap_up_ends")
        self.changed()

    async def refresh_call(self) -> None:
        try:
            self.call = await self.staff.call("GET", self.staff.agent("/call"))
        except StaffApiError:
            self.call = None
        if self.call is not None and self.call.get("case_id"):
            await self.refresh_case(int(self.call["case_id"]))
        self.changed()

    async def refresh_case(self, case_id: int) -> None:
        with contextlib.suppress(StaffApiError):
            self.case = await self.staff.call("GET", f"/api/cases/{case_id}")
            self.changed()

    async def refresh_today(self) -> None:
        with contextlib.suppress(StaffApiError):
            self.today = await self.staff.call("GET", self.staff.agent("/today"))
            self.changed()

    async def refresh_history(self, caller: str, case_id: int | None) -> None:
        if not caller:
            return
        with contextlib.suppress(StaffApiError):
            page = await self.staff.call(
                "GET", f"/api/cases?caller={caller.replace('+', '%2B')}&limit=6"
            )
            items = page.get("items", []) if isinstance(page, dict) else []
            self.history = [c for c in items if c.get("id") != case_id]
            self.changed()

    async def follow_events(self) -> None:
        async for event in self.staff.events():
            self.on_stream(event)

    def on_stream(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        data: dict[str, Any] = event.get("data") or {}
        if kind == "reset":
            self.connected = True
            state = data.get("state") or {}
            me = (state.get("agents") or {}).get(self.user)
            if me:
                self.state = me.get("state", self.state)
                self.reason = me.get("reason", "")
            self.queues = dict(state.get("queues") or {})
            offers = [o for o in state.get("offers") or [] if o.get("agent") == self.user]
            self.offer = offers[-1] if offers else None
            if self.offer is not None:
                self.ivr_steps = (str(self.offer.get("call_id")), list(self.offer.get("ivr") or []))
            self.spawn(self.refresh_agent())
            self.spawn(self.refresh_today())
            if self.state == "on_call":
                self.spawn(self.refresh_call())
        elif kind == "resumed":
            self.connected = True
        elif kind == "disconnected":
            self.connected = False
        elif kind == "agent_state" and data.get("agent") == self.user:
            previous, self.state = self.state, str(data.get("state"))
            self.reason = str(data.get("reason") or "")
            if self.state == "on_call":
                self.spawn(self.refresh_call())
            elif self.state == "wrap_up":
                self.spawn(self.refresh_agent())
            if self.state in ("idle", "paused", "logged_out"):
                if previous in ("on_call", "wrap_up", "reserved"):
                    self.call = None
                    self.case = None
                self.spawn(self.refresh_today())
        elif kind == "offer" and data.get("agent") == self.user:
            if data.get("state") == "ringing":
                self.offer = data
                self.ivr_steps = (str(data.get("call_id")), list(data.get("ivr") or []))
                self.history = []
                self.spawn(self.refresh_history(str(data.get("caller") or ""), data.get("case_id")))
            elif self.offer is not None and self.offer.get("call_id") == data.get("call_id"):
                self.offer = None
                if data.get("state") == "answered" and data.get("case_id"):
                    self.spawn(self.refresh_case(int(data["case_id"])))
                elif data.get("state") != "answered":
                    reason = data.get("reason")
                    self.say(f"* offer {data.get('state')}" + (f": {reason}" if reason else ""))
        elif kind == "queue" and data.get("queue"):
            self.queues[str(data["queue"])] = data
        elif kind == "case":
            current = self.case["id"] if self.case else None
            if current is not None and data.get("case_id") == current:
                self.spawn(self.refresh_case(int(current)))
            elif self.call is not None and data.get("case_id") == self.call.get("case_id"):
                self.spawn(self.refresh_case(int(data["case_id"])))
        elif kind in ("call_answered", "call_ended") and data.get("agent") == self.user:
            self.spawn(self.refresh_today())
        elif kind == "closing":
            self.connected = False
        self.changed()

    # -- the phone's side ------------------------------------------------------------------------

    def on_phone(self, event: PhoneEvent) -> None:
        if event.kind == "ringing":
            self.ringing_caller = event.caller
        elif event.kind == "ended":
            self.ringing_caller = ""
            self.say(f"* phone: call ended ({event.detail})")
        elif event.kind == "registered":
            self.say(
                f"* phone registered at {event.detail} (server {self.server[0]}:{self.server[1]})"
            )
        elif event.kind == "unregistered":
            self.say(f"* phone unregistered ({event.detail})")
        elif event.kind == "problem":
            self.say(f"! phone: {event.detail}")
        self.changed()

    # -- commands --------------------------------------------------------------------------------

    async def api(self, what: str, method: str, path: str, body: Any = None) -> Any:
        try:
            result = await self.staff.call(method, path, body)
        except StaffApiError as exc:
            self.say(f"! {what}: {exc.message} ({exc.code})")
            return None
        self.say(f"> {what}: ok")
        return result if result is not None else True

    async def command(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        if not words:
            return
        verb, args = words[0].lower(), words[1:]
        agent = self.staff.agent
        phone = self.phone
        match verb:
            case "r" | "ready":
                info = await self.api("ready", "POST", agent("/ready"))
                if isinstance(info, dict):
                    self.state, self.reason = info.get("state", self.state), info.get("reason", "")
            case "p" | "pause":
                if not args:
                    self.say("pause reasons: " + (", ".join(self.reasons) or "(none configured)"))
                    return
                info = await self.api(
                    f"pause ({args[0]})", "POST", agent("/pause"), {"reason": args[0]}
                )
                if isinstance(info, dict):
                    self.state, self.reason = info.get("state", self.state), info.get("reason", "")
            case "o" | "logout":
                info = await self.api("log out", "POST", agent("/logout"))
                if isinstance(info, dict):
                    self.state, self.reason = info.get("state", self.state), info.get("reason", "")
            case "a" | "answer":
                if phone is None:
                    return
                why = await phone.answer()
                self.say(f"! answer: {why}" if why else "> answer: ok")
            case "d" | "decline":
                if phone is None:
                    return
                why = phone.decline()
                self.say(f"! decline: {why}" if why else "> decline: ok")
            case "h" | "hold":
                await self._call_change("hold", agent("/call/hold"))
            case "u" | "resume" | "unhold":
                await self._call_change("resume", agent("/call/resume"))
            case "m" | "mute" | "unmute":
                muted = not bool(self.call and self.call.get("muted"))
                if verb == "unmute":
                    muted = False
                await self._call_change(
                    "mute" if muted else "unmute", agent("/call/mute"), {"muted": muted}
                )
            case "k" | "keys":
                if not args:
                    self.say("! keys: give the digits, e.g. k 123#")
                    return
                await self.api(f"keys {args[0]}", "POST", agent("/call/keys"), {"digits": args[0]})
            case "t" | "transfer":
                if not args:
                    self.say("! transfer: give a colleague's id or extension, or a queue")
                    return
                await self.api(
                    f"transfer to {args[0]}",
                    "POST",
                    agent("/call/transfer"),
                    {"to": args[0], "mode": "blind"},
                )
            case "x" | "hangup" | "hang":
                await self._hangup()
            case "e" | "end":
                await self.api("end wrap-up", "POST", agent("/wrap-up/end"))
            case "w" | "extend":
                try:
                    seconds = float(args[0]) if args else 30.0
                except ValueError:
                    self.say("! extend: give seconds, e.g. w 60")
                    return
                info = await self.api(
                    f"wrap-up +{seconds:g} s",
                    "POST",
                    agent("/wrap-up/extend"),
                    {"seconds": seconds},
                )
                if isinstance(info, dict):
                    self.wrap_up_ends = info.get("wrap_up_ends")
            case "s" | "status":
                await asyncio.gather(self.refresh_agent(), self.refresh_today())
                if self.state == "on_call":
                    await self.refresh_call()
                sent, received = phone.media_counts() if phone is not None else (0, 0)
                self._last = ""
                self.say(self.render())
                if phone is not None and phone.media is not None:
                    self.say(
                        f"   audio: {sent} packets sent ({self.source.label}), {received} received"
                    )
            case "?" | "h?" | "help":
                self.say(HELP)
            case "q" | "quit" | "exit":
                self.quit.set()
            case "wait":
                await self._wait(args)
            case "sleep":
                with contextlib.suppress(ValueError, IndexError):
                    await asyncio.sleep(float(args[0]))
            case _:
                self.say(f"! unknown command {verb!r}: ? for help")
        self.changed()

    async def _call_change(self, what: str, path: str, body: Any = None) -> None:
        info = await self.api(what, "POST", path, body)
        if isinstance(info, dict):
            self.call = info

    async def _hangup(self) -> None:
        """Through the API (the engine ends the call for both), else the phone's own BYE."""
        try:
            await self.staff.call("POST", self.staff.agent("/call/hangup"))
        except StaffApiError as exc:
            if self.phone is not None and self.phone.call is not None:
                why = self.phone.hangup()
                self.say(f"! hang up: {why}" if why else "> hang up: ok (phone)")
            else:
                self.say(f"! hang up: {exc.message} ({exc.code})")
            return
        self.say("> hang up: ok")

    async def _wait(self, args: list[str]) -> None:
        if not args or args[0] not in WAIT_STATES:
            self.say("! wait: one of " + ", ".join(WAIT_STATES))
            return
        want = WAIT_STATES[args[0]]
        timeout = float(args[1]) if len(args) > 1 else 60.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def reached() -> bool:
            if args[0] == "ringing":
                return self.offer is not None or bool(self.phone and self.phone.call)
            return self.state == want

        while not reached():
            if loop.time() >= deadline:
                self.paint()
                self.say(f"! wait {args[0]}: not reached within {timeout:g} s")
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
            self.changed()  # the painter still paints
        self.paint()  # what was waited for, on the screen

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, lines: asyncio.Queue[str | None]) -> int:
        try:
            await self.staff.sign_in(self.password)
        except StaffApiError as exc:
            self.say(f"! sign-in to {self.staff.base} as {self.user} failed: {exc}")
            await self.staff.close()
            return 1
        self.say(f"* signed in to {self.staff.base} as {self.user} ({self.staff.role})")
        self.phone = Phone(
            server=self.server,
            user=self.user,
            password=self.password,
            source=self.source,
            recorder=self.recorder,
            on_event=self.on_phone,
            local_host=self.local_host,
        )
        try:
            await self.phone.start()
            status = await self.phone.register()
            if status >= 300:
                self.say(f"! the phone's registration was refused ({status}): no calls can ring")
            with contextlib.suppress(StaffApiError):
                self.reasons = await self.staff.pause_reasons()
            self.spawn(self._painter())
            self.spawn(self.follow_events())
            await self.refresh_agent()
            self.say("* ? for help")
            reader = asyncio.get_running_loop().create_task(self._read(lines))
            quit_wait = asyncio.get_running_loop().create_task(self.quit.wait())
            await asyncio.wait({reader, quit_wait}, return_when=asyncio.FIRST_COMPLETED)
            for t in (reader, quit_wait):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        finally:
            for t in list(self._tasks):
                t.cancel()
            for t in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await self.phone.close()
            await self.staff.close()
            self.say("* bye")
        return 0

    async def _read(self, lines: asyncio.Queue[str | None]) -> None:
        while True:
            line = await lines.get()
            if line is None:
                return  # end of the script or of standard input: quit
            await self.command(line.strip())


def _stdin_lines(loop: asyncio.AbstractEventLoop, q: asyncio.Queue[str | None]) -> None:
    """Standard input, line by line, from a daemon thread (a terminal stays blocking)."""

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(q.put_nowait, line)
        loop.call_soon_threadsafe(q.put_nowait, None)

    threading.Thread(target=read, name="stdin", daemon=True).start()


def _hostport(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if text.startswith("[") and "]" in text:  # [v6]:port
        inner, _, rest = text[1:].partition("]")
        return inner, int(rest[1:]) if rest.startswith(":") else default_port
    if not sep or ":" in host:
        return text, default_port
    return host, int(port)


async def _main(args: argparse.Namespace, password: str) -> int:
    try:
        source = AudioSource.parse(args.play)
    except ValueError as exc:
        print(f"hotline agent: {exc}", file=sys.stderr)
        return 2
    recorder = Recorder(Path(args.record) if args.record else None)
    staff = StaffClient(args.http, args.user)
    agent = TerminalAgent(
        staff=staff,
        password=password,
        server=_hostport(args.server, 5060),
        source=source,
        recorder=recorder,
        local_host=args.local,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, agent.quit.set)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    if args.script:
        text = await asyncio.to_thread(Path(args.script).read_text)
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.put_nowait(line)
        lines.put_nowait(None)
    else:
        _stdin_lines(loop, lines)
    return await agent.run(lines)


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if sys.stdin.isatty():
        return getpass.getpass(f"Password for {args.user}: ")
    return None


def run(args: argparse.Namespace) -> int:
    """``hotline agent``'s entry point."""
    password = _password(args)
    if not password:
        print(
            f"hotline agent: no password: use --password-stdin, set {PASSWORD_ENV}, "
            "or run it on a terminal",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(_main(args, password))
    except KeyboardInterrupt:
        return 130


def add_command(sub: Any) -> None:
    """The ``agent`` subcommand on ``hotline``'s subparsers."""
    p = sub.add_parser(
        "agent",
        help="the agent's desk in a terminal, with its own SIP phone (docs/terminal-agent.md)",
        description="The agent's desk in a terminal, with its own SIP phone: signs in to the "
        "staff API, registers the phone, shows the engine's state and takes one command per "
        "line (? for help).",
    )
    p.add_argument("--user", required=True, help="your staff id ([[agents]] id)")
    p.add_argument(
        "--server", default="127.0.0.1:5060", metavar="HOST:PORT", help="the hotline's SIP address"
    )
    p.add_argument(
        "--http",
        default="http://127.0.0.1:8080",
        metavar="URL",
        help="the hotline's HTTP API (default http://127.0.0.1:8080)",
    )
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password from the first line of standard input (else ${PASSWORD_ENV}, "
        "else asked)",
    )
    p.add_argument(
        "--play",
        default="silence",
        metavar="FILE|tone:HZ|silence",
        help="what the caller hears from you: a WAV file (looped), a tone, or silence",
    )
    p.add_argument("--record", metavar="FILE", help="write what you hear to this WAV file")
    p.add_argument(
        "--script",
        metavar="FILE",
        help="run the commands of FILE (one per line; wait/sleep too) instead of reading them",
    )
    p.add_argument(
        "--local", metavar="IP", help="the phone's own address (default: the route to --server)"
    )
    p.set_defaults(func=run)
