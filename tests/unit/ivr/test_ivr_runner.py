"""The IVR runner, driven through a scripted session: what the caller hears, which keys lead
where, what the flow hands to routing, and what lands in the case."""

from __future__ import annotations

import datetime as dt
import itertools
import tomllib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from ivr import runner
from ivr.flow import IvrConfig, parse_ivr
from ivr.runner import Outcome, run_flow
from media_gateway.session import CallSession, CollectResult, PlayDone, SessionEnded

DEMO = Path(__file__).resolve().parents[3] / "hotline" / "demo.toml"
_ops = itertools.count(1)


class ScriptedSession:
    """A test double that stands in for CallSession's media so flows can be tested in
    microseconds; the real session (prompts, RTP, DTMF) is covered by the interop tests.

    ``keys`` is what the caller presses, one string per ``collect`` that finds the digit
    buffer empty ("" = the caller presses nothing: a timeout). Keys left over after a collect
    stay buffered (type-ahead) until the next collect or ``flush_digits``, as on a real call;
    an interruptible prompt with keys buffered is skipped (barge-in). When the script runs out
    the caller hangs up (``SessionEnded``), like a far-end BYE.
    """

    def __init__(
        self,
        keys: Iterable[str] = (),
        *,
        caller: str = "+8613800138000",
        dialled: str = "1000",
        lang: str | None = None,
    ) -> None:
        self.script = deque(keys)
        self.buffer = ""
        self.plays: list[tuple[list[str], bool]] = []
        self.collects: list[dict[str, Any]] = []
        self.flushed: list[str] = []
        self.caller = caller
        self.dialled = dialled
        self.lang = lang
        self.vars: dict[str, Any] = {}
        self.state = "answered"

    @property
    def played(self) -> list[str]:
        """Every prompt name played, in order."""
        return [p for prompts, _ in self.plays for p in prompts]

    async def play(
        self,
        prompt: str | Sequence[str] | None = None,
        *,
        lang: str | None = None,
        interruptible: bool = True,
        **_: Any,
    ) -> PlayDone:
        self._check()
        prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
        self.plays.append((prompts, interruptible))
        op = f"p{next(_ops)}"
        if interruptible and self.buffer:
            return PlayDone(op=op, reason="dtmf", digit=self.buffer[0])
        return PlayDone(op=op, reason="finished")

    async def collect(
        self,
        max_digits: int = 1,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the signature of CallSession.collect
        terminator: str = "#",
        inter_digit_timeout: float = 3.0,
    ) -> CollectResult:
        self._check()
        self.collects.append(
            {
                "max_digits": max_digits,
                "timeout": timeout,
                "terminator": terminator,
                "inter_digit_timeout": inter_digit_timeout,
            }
        )
        if not self.buffer:
            if not self.script:
                self.state = "ended"
                raise SessionEnded("remote", "script ran out")
            self.buffer = self.script.popleft()
        got = ""
        while self.buffer:
            d, self.buffer = self.buffer[0], self.buffer[1:]
            if terminator and d in terminator:
                return CollectResult(got, "terminator")
            got += d
            if len(got) >= max_digits:
                return CollectResult(got, "max_digits")
        return CollectResult(got, "inter_digit_timeout" if got else "timeout")

    def flush_digits(self) -> str:
        out, self.buffer = self.buffer, ""
        self.flushed.append(out)
        return out

    def _check(self) -> None:
        if self.state == "ended":
            raise SessionEnded("remote", "bye")


@dataclass
class StubQueues:
    """The ACD's live view: free agents and estimated wait per queue."""

    free: dict[str, int] = field(default_factory=dict)
    ewt: dict[str, float] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def agents_available(self, queue: str) -> int:
        self.asked.append(queue)
        return self.free.get(queue, 0)

    def ewt_seconds(self, queue: str) -> float:
        return self.ewt.get(queue, 0.0)


# 2026-03-02 is a Monday.
MON_0130_UTC = dt.datetime(2026, 3, 2, 1, 30, tzinfo=dt.UTC).timestamp()


@dataclass
class Run:
    outcome: Outcome
    session: ScriptedSession
    events: list[tuple[str, dict[str, Any]]]
    queues: StubQueues

    @property
    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def inputs(self, node: str | None = None) -> list[dict[str, Any]]:
        return [
            d for k, d in self.events if k == "ivr_input" and (node is None or d["node"] == node)
        ]


def flows(text: str) -> IvrConfig:
    """An IvrConfig from TOML text, as a supervisor would write it."""
    return parse_ivr(tomllib.loads(text)["ivr"])


async def run(
    cfg: IvrConfig,
    keys: Iterable[str] = (),
    *,
    session: ScriptedSession | None = None,
    flow: str | None = None,
    queues: StubQueues | None = None,
    at: float = MON_0130_UTC,
) -> Run:
    s = session if session is not None else ScriptedSession(keys)
    q = queues if queues is not None else StubQueues()
    events: list[tuple[str, dict[str, Any]]] = []
    outcome = await run_flow(
        cfg,
        cast(CallSession, s),
        flow=flow,
        record=lambda kind, data: events.append((kind, data)),
        queues=q,
        wallclock=lambda: at,
    )
    return Run(outcome, s, events, q)


MENU = """
[ivr.flows.main]
start = "menu"
[ivr.flows.main.nodes.menu]
type = "menu"
prompt = "main_menu"
choices = { "1" = "sales", "2" = "support", "#" = "operator" }
retries = 2
{default}
[ivr.flows.main.nodes.sales]
type = "queue"
queue = "sales"
[ivr.flows.main.nodes.support]
type = "queue"
queue = "support"
[ivr.flows.main.nodes.operator]
type = "queue"
queue = "operator"
"""


def menu(default: str | None = "operator") -> IvrConfig:
    return flows(MENU.replace("{default}", f'default = "{default}"' if default else ""))


# -- menus -------------------------------------------------------------------------------------


async def test_menu_choice() -> None:
    r = await run(menu(), ["2"])
    assert r.outcome.kind == "queue"
    assert r.outcome.queue == "support"
    assert r.session.played == ["main_menu"]
    assert r.session.collects == [
        {"max_digits": 1, "timeout": 5.0, "terminator": "", "inter_digit_timeout": 3.0}
    ]
    assert r.events == [
        ("ivr_input", {"node": "menu", "digits": "2", "result": "chosen", "to": "support"})
    ]


async def test_hash_is_a_menu_key_not_a_terminator() -> None:
    r = await run(menu(), ["#"])
    assert r.outcome.queue == "operator"


async def test_invalid_then_valid() -> None:
    r = await run(menu(), ["7", "1"])
    assert r.outcome.queue == "sales"
    assert r.session.played == ["main_menu", "invalid", "main_menu"]
    assert r.session.plays[1] == (["invalid"], False)  # the error prompt is not skippable
    assert r.inputs() == [
        {"node": "menu", "digits": "7", "result": "invalid", "attempt": 1},
        {"node": "menu", "digits": "1", "result": "chosen", "to": "sales"},
    ]


async def test_invalid_key_drops_type_ahead() -> None:
    r = await run(menu(), ["79", "1"])
    assert r.session.flushed == ["9"]
    assert r.outcome.queue == "sales"


async def test_no_input_twice_then_default() -> None:
    r = await run(menu(), ["", "", ""])
    assert r.outcome.queue == "operator"
    assert r.session.played == ["main_menu", "no_input", "main_menu", "no_input", "main_menu"]
    assert r.events == [
        ("ivr_input", {"node": "menu", "digits": "", "result": "no_input", "attempt": 1}),
        ("ivr_input", {"node": "menu", "digits": "", "result": "no_input", "attempt": 2}),
        ("ivr_input", {"node": "menu", "digits": "", "result": "no_input", "attempt": 3}),
        ("ivr_branch", {"node": "menu", "to": "operator", "reason": "retries"}),
    ]


async def test_custom_retry_prompts_and_timeout() -> None:
    cfg = flows(
        MENU.replace("{default}", 'default = "sales"')
        .replace("retries = 2", 'retries = 1\ntimeout = 7\ninvalid_prompt = "sorry"')
        .replace('prompt = "main_menu"', 'prompt = ["main_menu", "silence:500"]')
    )
    r = await run(cfg, ["9", "9"])
    assert r.session.played == ["main_menu", "silence:500", "sorry", "main_menu", "silence:500"]
    assert [c["timeout"] for c in r.session.collects] == [7.0, 7.0]
    assert r.outcome.queue == "sales"


async def test_retries_exhausted_without_default_hangs_up_with_goodbye() -> None:
    r = await run(menu(default=None), ["5", "", "9"])
    assert r.outcome.kind == "hangup"
    assert r.outcome.reason == "retries"
    assert r.session.played == [
        "main_menu",
        "invalid",
        "main_menu",
        "no_input",
        "main_menu",
        "goodbye",
    ]
    assert r.session.plays[-1] == (["goodbye"], False)
    assert r.events[-1] == ("ivr_branch", {"node": "menu", "to": "hangup", "reason": "retries"})


async def test_caller_hangs_up_in_the_menu() -> None:
    with pytest.raises(SessionEnded):
        await run(menu(), [])


# -- collect -----------------------------------------------------------------------------------

COLLECT = """
[ivr.flows.main]
start = "acct"
[ivr.flows.main.nodes.acct]
type = "collect"
prompt = "account_prompt"
var = "account"
{opts}
next = "done"
on_failure = "fallback"
[ivr.flows.main.nodes.done]
type = "queue"
queue = "q_${account}"
[ivr.flows.main.nodes.fallback]
type = "queue"
queue = "operator"
"""


def collect(opts: str = "") -> IvrConfig:
    return flows(COLLECT.replace("{opts}", opts))


async def test_collect_until_terminator_sets_the_variable() -> None:
    r = await run(collect(), ["123456#"])
    assert r.outcome.queue == "q_123456"
    assert r.session.vars["account"] == "123456"
    assert r.outcome.vars == {"account": "123456"}
    assert r.session.collects == [
        {"max_digits": 16, "timeout": 8.0, "terminator": "#", "inter_digit_timeout": 4.0}
    ]
    assert r.events == [
        (
            "ivr_input",
            {"node": "acct", "digits": "123456", "result": "accepted", "var": "account"},
        )
    ]


async def test_collect_stops_at_max_digits() -> None:
    r = await run(collect("max_digits = 4"), ["98765"])
    assert r.session.vars["account"] == "9876"


async def test_collect_custom_terminator_and_timeouts() -> None:
    cfg = collect('terminator = "*"\ntimeout = 10\ninter_digit_timeout = 2')
    r = await run(cfg, ["42*"])
    assert r.session.vars["account"] == "42"
    assert r.session.collects[0] == {
        "max_digits": 16,
        "timeout": 10.0,
        "terminator": "*",
        "inter_digit_timeout": 2.0,
    }


async def test_collect_too_short_then_pattern_mismatch_then_good() -> None:
    cfg = collect('min_digits = 4\nmax_digits = 6\npattern = "9[0-9]+"\nretries = 2')
    r = await run(cfg, ["12#", "123456", "912345"])
    assert r.outcome.queue == "q_912345"
    assert r.session.played == [
        "account_prompt",
        "invalid",
        "account_prompt",
        "invalid",
        "account_prompt",
    ]
    assert [(d["digits"], d["result"]) for d in r.inputs()] == [
        ("12", "invalid"),
        ("123456", "invalid"),
        ("912345", "accepted"),
    ]


async def test_collect_pattern_must_match_the_whole_entry() -> None:
    cfg = collect('pattern = "[0-9]{3}"\nretries = 0')
    r = await run(cfg, ["1234#"])
    assert r.outcome.queue == "operator"


async def test_collect_failure_goes_to_on_failure() -> None:
    r = await run(collect("retries = 1"), ["", "1"])  # min_digits 1: "1" would do...
    assert r.outcome.queue == "q_1"
    r = await run(collect("retries = 1\nmin_digits = 2"), ["", "1#"])
    assert r.outcome.queue == "operator"
    assert "account" not in r.session.vars
    assert r.session.played == ["account_prompt", "no_input", "account_prompt"]
    assert r.events[-1] == ("ivr_branch", {"node": "acct", "to": "fallback", "reason": "retries"})


async def test_collect_failure_without_on_failure_hangs_up() -> None:
    cfg = flows(COLLECT.replace("{opts}", "retries = 0").replace('on_failure = "fallback"', ""))
    r = await run(cfg, [""])
    assert r.outcome.kind == "hangup"
    assert r.outcome.reason == "retries"
    assert r.session.played[-1] == "goodbye"
    assert r.events[-1] == ("ivr_branch", {"node": "acct", "to": "hangup", "reason": "retries"})


async def test_collect_confirm_1_accepts() -> None:
    r = await run(collect("confirm = true"), ["4071#", "1"])
    assert r.outcome.queue == "q_4071"
    assert r.session.played == [
        "account_prompt",
        "you_entered",
        "digit_4",
        "digit_0",
        "digit_7",
        "digit_1",
        "confirm_entry",
    ]
    assert [(d["digits"], d["result"]) for d in r.inputs()] == [
        ("1", "confirmed"),
        ("4071", "accepted"),
    ]


async def test_collect_confirm_2_re_enters() -> None:
    r = await run(collect("confirm = true"), ["4071#", "2", "4072#", "1"])
    assert r.outcome.queue == "q_4072"
    assert r.session.vars["account"] == "4072"
    assert r.session.played.count("account_prompt") == 2
    assert [(d["digits"], d["result"]) for d in r.inputs()] == [
        ("2", "re-enter"),
        ("4071", "invalid"),
        ("1", "confirmed"),
        ("4072", "accepted"),
    ]


async def test_collect_confirm_reads_star_and_hash() -> None:
    r = await run(collect('confirm = true\nterminator = ""\nmax_digits = 3'), ["1*#", "1"])
    assert r.session.played[1:6] == ["you_entered", "digit_1", "star", "hash", "confirm_entry"]


# -- set, language, branch, ${var} -------------------------------------------------------------

LANG = """
[ivr.flows.main]
start = "language"
[ivr.flows.main.nodes.language]
type = "menu"
prompt = "language_menu"
choices = { "1" = "english", "2" = "chinese" }
default = "english"
[ivr.flows.main.nodes.english]
type = "set"
vars = { language = "en", "skill.en" = 4 }
next = "greet"
[ivr.flows.main.nodes.chinese]
type = "set"
vars = { language = "zh", "skill.zh" = 6, priority = 3 }
next = "greet"
[ivr.flows.main.nodes.greet]
type = "play"
prompt = "welcome"
next = "by_language"
[ivr.flows.main.nodes.by_language]
type = "branch"
cases = [ { var = "language", equals = "zh", next = "zh_desk" } ]
default = "desk"
[ivr.flows.main.nodes.zh_desk]
type = "queue"
queue = "support_${language}"
skills = { support = 5 }
[ivr.flows.main.nodes.desk]
type = "queue"
queue = "support_${language}"
skills = { support = 3, en = 2 }
"""


async def test_set_language_switches_session_lang_and_branch_follows() -> None:
    r = await run(flows(LANG), ["2"])
    assert r.session.lang == "zh"
    assert r.session.vars["language"] == "zh"
    assert r.outcome.language == "zh"
    assert r.outcome.queue == "support_zh"
    assert r.outcome.skills == {"support": 5, "zh": 6}
    assert r.outcome.priority == 3
    assert r.kinds == ["ivr_input", "ivr_set", "ivr_branch"]
    assert r.events[1] == (
        "ivr_set",
        {"node": "chinese", "vars": {"language": "zh", "skill.zh": 6, "priority": 3}},
    )
    assert r.events[2] == ("ivr_branch", {"node": "by_language", "to": "zh_desk"})


async def test_english_path_and_skill_variables_win_over_node_skills() -> None:
    r = await run(flows(LANG), ["1"])
    assert r.session.lang == "en"
    assert r.outcome.queue == "support_en"
    # the node says en = 2; the caller's skill.en variable (4) is merged over it
    assert r.outcome.skills == {"support": 3, "en": 4}
    assert r.outcome.priority == 0
    assert r.events[-1] == ("ivr_branch", {"node": "by_language", "to": "desk"})


async def test_session_language_before_the_flow_counts() -> None:
    cfg = flows(LANG.replace('start = "language"', 'start = "by_language"'))
    r = await run(cfg, session=ScriptedSession(lang="zh"))
    assert r.outcome.queue == "support_zh"
    r = await run(cfg, session=ScriptedSession())
    assert r.outcome.queue == "support_"  # a session without a language: ${language} is ""
    assert r.outcome.language == "en"


BRANCH = """
[ivr.flows.main]
start = "b"
[ivr.flows.main.nodes.b]
type = "branch"
cases = [
  { var = "caller", matches = "^\\\\+86", next = "china" },
  { var = "dialled", in = ["1001", "1002"], next = "direct" },
  { var = "score", above = 7, next = "vip" },
  { var = "score", below = 3, next = "low" },
]
default = "other"
[ivr.flows.main.nodes.china]
type = "transfer"
target = "sip:cn@10.0.0.8"
[ivr.flows.main.nodes.direct]
type = "transfer"
target = "${dialled}"
[ivr.flows.main.nodes.vip]
type = "queue"
queue = "vip"
priority = 9
[ivr.flows.main.nodes.low]
type = "voicemail"
queue = "support"
[ivr.flows.main.nodes.other]
type = "hangup"
prompt = "closed"
"""


@pytest.mark.parametrize(
    ("caller", "dialled", "score", "kind", "where"),
    [
        ("+8613800138000", "1000", None, "transfer", "sip:cn@10.0.0.8"),
        ("+14155550100", "1002", None, "transfer", "1002"),
        ("+14155550100", "1000", "8", "queue", "vip"),
        ("+14155550100", "1000", "2.5", "voicemail", "support"),
        ("+14155550100", "1000", "5", "hangup", ""),
        ("+14155550100", "1000", "n/a", "hangup", ""),
    ],
)
async def test_branch_tests(
    caller: str, dialled: str, score: str | None, kind: str, where: str
) -> None:
    s = ScriptedSession(caller=caller, dialled=dialled)
    if score is not None:
        s.vars["score"] = score
    r = await run(flows(BRANCH), session=s)
    assert r.outcome.kind == kind
    assert (r.outcome.target or r.outcome.queue) == where
    assert r.kinds == ["ivr_branch"]


# -- terminal outcomes -------------------------------------------------------------------------


async def test_queue_priority_node_and_variable() -> None:
    r = await run(flows(BRANCH), session=_with(score="9"))
    assert (r.outcome.queue, r.outcome.priority) == ("vip", 9)
    cfg = flows(
        """
[ivr.flows.main]
start = "s"
[ivr.flows.main.nodes.s]
type = "set"
vars = { priority = 4, queue = "sales" }
next = "q"
[ivr.flows.main.nodes.q]
type = "queue"
"""
    )
    r = await run(cfg)
    assert (r.outcome.kind, r.outcome.queue, r.outcome.priority) == ("queue", "sales", 4)
    assert r.outcome.vars == {"priority": "4", "queue": "sales"}


def _with(**vars_: str) -> ScriptedSession:
    """A caller from outside China (the BRANCH flow's first case) with variables set."""
    s = ScriptedSession(caller="+14155550100")
    s.vars.update(vars_)
    return s


async def test_transfer_outcome() -> None:
    r = await run(flows(BRANCH), session=ScriptedSession(caller="+8610"))
    assert r.outcome == Outcome(
        kind="transfer", target="sip:cn@10.0.0.8", language="en", vars={}, queue=""
    )
    assert r.session.played == []


async def test_voicemail_outcome_with_default_and_custom_greeting() -> None:
    r = await run(flows(BRANCH), session=_with(score="1"))
    assert r.outcome.kind == "voicemail"
    assert r.outcome.queue == "support"
    assert r.outcome.greeting == ["voicemail_intro"]
    assert r.session.played == []  # the contact center plays the greeting and records
    cfg = flows(
        BRANCH.replace('queue = "support"', 'queue = "support"\ngreeting = ["closed", "beep"]')
    )
    r = await run(cfg, session=_with(score="1"))
    assert r.outcome.greeting == ["closed", "beep"]


async def test_hangup_node_plays_its_prompt() -> None:
    r = await run(flows(BRANCH), session=_with(score="5"))
    assert r.outcome.kind == "hangup"
    assert r.outcome.reason == "flow"
    assert r.session.plays == [(["closed"], False)]


# -- time of day -------------------------------------------------------------------------------

SCHEDULE = """
[ivr]
timezone = "{tz}"
holidays = ["2026-10-01"]
[ivr.flows.main]
start = "hours"
[ivr.flows.main.nodes.hours]
type = "schedule"
open = { "mon-fri" = "09:00-18:00" }
open_next = "open"
closed_next = "closed"
[ivr.flows.main.nodes.open]
type = "queue"
queue = "sales"
[ivr.flows.main.nodes.closed]
type = "voicemail"
queue = "sales"
"""


def _utc(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("tz", "when", "kind", "local"),
    [
        # Monday 01:30 UTC is 09:30 in Shanghai
        ("Asia/Shanghai", _utc(2026, 3, 2, 1, 30), "queue", "2026-03-02T09:30+08:00"),
        ("UTC", _utc(2026, 3, 2, 1, 30), "voicemail", "2026-03-02T01:30+00:00"),
        # Monday 10:00 UTC is 18:00 in Shanghai: closing time (end exclusive)
        ("Asia/Shanghai", _utc(2026, 3, 2, 10, 0), "voicemail", "2026-03-02T18:00+08:00"),
        ("Asia/Shanghai", _utc(2026, 3, 2, 9, 59), "queue", "2026-03-02T17:59+08:00"),
        ("UTC", _utc(2026, 3, 2, 10, 0), "queue", "2026-03-02T10:00+00:00"),
        # Friday 16:30 UTC is Saturday 00:30 in Shanghai
        ("Asia/Shanghai", _utc(2026, 3, 6, 16, 30), "voicemail", "2026-03-07T00:30+08:00"),
        ("UTC", _utc(2026, 3, 6, 16, 30), "queue", "2026-03-06T16:30+00:00"),
        # Thursday 2026-10-01 is a holiday, by the local date
        ("Asia/Shanghai", _utc(2026, 10, 1, 2, 0), "voicemail", "2026-10-01T10:00+08:00"),
        ("Asia/Shanghai", _utc(2026, 10, 2, 2, 0), "queue", "2026-10-02T10:00+08:00"),
        ("UTC", _utc(2026, 10, 1, 10, 0), "voicemail", "2026-10-01T10:00+00:00"),
        ("UTC", _utc(2026, 9, 30, 17, 0), "queue", "2026-09-30T17:00+00:00"),
    ],
)
async def test_schedule_with_timezone_and_holidays(
    tz: str, when: float, kind: str, local: str
) -> None:
    r = await run(flows(SCHEDULE.replace("{tz}", tz)), at=when)
    assert r.outcome.kind == kind
    assert r.events == [
        (
            "ivr_branch",
            {
                "node": "hours",
                "to": "open" if kind == "queue" else "closed",
                "open": kind == "queue",
                "local_time": local,
            },
        )
    ]


# -- queue state -------------------------------------------------------------------------------

QSTATE = """
[ivr.flows.main]
start = "set"
[ivr.flows.main.nodes.set]
type = "set"
vars = { language = "zh" }
next = "state"
[ivr.flows.main.nodes.state]
type = "queue_state"
queue = "support_${language}"
agents_available = "now"
ewt_above = 300
ewt_next = "callback"
next = "wait"
[ivr.flows.main.nodes.now]
type = "queue"
queue = "support_${language}"
priority = 1
[ivr.flows.main.nodes.wait]
type = "queue"
queue = "support_${language}"
[ivr.flows.main.nodes.callback]
type = "voicemail"
queue = "support_${language}"
"""


@pytest.mark.parametrize(
    ("free", "ewt", "to", "kind"),
    [
        (2, 900.0, "now", "queue"),
        (0, 900.0, "callback", "voicemail"),
        (0, 300.0, "wait", "queue"),  # "above" is strictly above
        (0, 30.4, "wait", "queue"),
    ],
)
async def test_queue_state(free: int, ewt: float, to: str, kind: str) -> None:
    q = StubQueues(free={"support_zh": free}, ewt={"support_zh": ewt})
    r = await run(flows(QSTATE), queues=q)
    assert q.asked == ["support_zh"]
    assert r.outcome.kind == kind
    assert r.outcome.queue == "support_zh"
    assert r.events[-1] == (
        "ivr_branch",
        {
            "node": "state",
            "to": to,
            "queue": "support_zh",
            "agents_available": free,
            "ewt_seconds": round(ewt),
        },
    )


async def test_queue_state_without_optional_branches_goes_next() -> None:
    cfg = flows(
        QSTATE.replace('agents_available = "now"\n', "").replace('ewt_next = "callback"\n', "")
    )
    r = await run(cfg, queues=StubQueues(free={"support_zh": 3}, ewt={"support_zh": 9999}))
    assert r.events[-1][1]["to"] == "wait"


# -- several flows -----------------------------------------------------------------------------

TWO_FLOWS = """
[ivr]
entry = "main"
[ivr.flows.main]
start = "menu"
[ivr.flows.main.nodes.menu]
type = "menu"
prompt = "main_menu"
choices = { "1" = "to_billing", "2" = "billing:late", "3" = "sales" }
[ivr.flows.main.nodes.to_billing]
type = "goto"
flow = "billing"
[ivr.flows.main.nodes.sales]
type = "queue"
queue = "sales"
[ivr.flows.billing]
start = "intro"
[ivr.flows.billing.nodes.intro]
type = "play"
prompt = "billing_intro"
next = "main:sales"
[ivr.flows.billing.nodes.late]
type = "queue"
queue = "billing"
"""


async def test_goto_runs_another_flows_start_and_can_come_back() -> None:
    r = await run(flows(TWO_FLOWS), ["1"])
    assert r.session.played == ["main_menu", "billing_intro"]
    assert r.outcome.queue == "sales"
    assert r.kinds == ["ivr_input", "ivr_branch"]
    assert r.events[1][1]["to"] == "billing:intro"


async def test_goto_branch_event_names_the_goto_node() -> None:
    r = await run(flows(TWO_FLOWS), ["1"])
    assert r.events[1] == ("ivr_branch", {"node": "to_billing", "to": "billing:intro"})


async def test_goto_to_a_named_node_and_flow_colon_node() -> None:
    cfg = flows(TWO_FLOWS.replace('flow = "billing"', 'flow = "billing"\nnode = "late"'))
    r = await run(cfg, ["1"])
    assert r.outcome.queue == "billing"
    r = await run(flows(TWO_FLOWS), ["2"])
    assert r.outcome.queue == "billing"
    assert r.events == [
        ("ivr_input", {"node": "menu", "digits": "2", "result": "chosen", "to": "billing:late"})
    ]


async def test_run_a_named_flow() -> None:
    r = await run(flows(TWO_FLOWS), flow="billing")
    assert r.session.played == ["billing_intro"]
    assert r.outcome.queue == "sales"


# -- loops -------------------------------------------------------------------------------------


async def test_a_flow_that_loops_forever_hangs_up_with_reason_loop() -> None:
    cfg = flows(
        """
[ivr.flows.main]
start = "a"
[ivr.flows.main.nodes.a]
type = "set"
vars = { n = "a" }
next = "b"
[ivr.flows.main.nodes.b]
type = "set"
vars = { n = "b" }
next = "a"
"""
    )
    r = await run(cfg)
    assert r.outcome.kind == "hangup"
    assert r.outcome.reason == "loop"
    assert r.kinds.count("ivr_set") == runner.MAX_STEPS
    assert r.events[-1] == ("ivr_branch", {"node": "a", "to": "hangup", "reason": "loop"})


async def test_menu_loop_back_is_not_a_loop_while_the_caller_presses_keys() -> None:
    cfg = flows(TWO_FLOWS.replace('"3" = "sales"', '"3" = "sales", "*" = "menu"'))
    r = await run(cfg, ["*"] * 20 + ["3"])
    assert r.outcome.queue == "sales"
    assert r.session.played == ["main_menu"] * 21


# -- the case record ---------------------------------------------------------------------------


async def test_every_input_and_branch_is_recorded_in_order() -> None:
    cfg = flows(
        """
[ivr]
timezone = "Asia/Shanghai"
[ivr.flows.main]
start = "lang"
[ivr.flows.main.nodes.lang]
type = "menu"
prompt = "language_menu"
choices = { "1" = "en", "2" = "zh" }
[ivr.flows.main.nodes.en]
type = "set"
vars = { language = "en" }
next = "hours"
[ivr.flows.main.nodes.zh]
type = "set"
vars = { language = "zh" }
next = "hours"
[ivr.flows.main.nodes.hours]
type = "schedule"
open = { "mon-sun" = "00:00-24:00" }
open_next = "acct"
closed_next = "acct"
[ivr.flows.main.nodes.acct]
type = "collect"
var = "account"
next = "vip"
[ivr.flows.main.nodes.vip]
type = "branch"
cases = [ { var = "account", matches = "^9", next = "q" } ]
default = "q"
[ivr.flows.main.nodes.q]
type = "queue_state"
queue = "sales"
next = "end"
[ivr.flows.main.nodes.end]
type = "queue"
queue = "sales"
"""
    )
    r = await run(cfg, ["9", "2", "", "91#"])
    assert [(k, d["node"]) for k, d in r.events] == [
        ("ivr_input", "lang"),
        ("ivr_input", "lang"),
        ("ivr_set", "zh"),
        ("ivr_branch", "hours"),
        ("ivr_input", "acct"),
        ("ivr_input", "acct"),
        ("ivr_branch", "vip"),
        ("ivr_branch", "q"),
    ]
    assert [d.get("result") for k, d in r.events if k == "ivr_input"] == [
        "invalid",
        "chosen",
        "no_input",
        "accepted",
    ]
    assert r.outcome.language == "zh"
    assert r.outcome.vars == {"language": "zh", "account": "91"}


# -- the shipped demo --------------------------------------------------------------------------


def demo() -> IvrConfig:
    return parse_ivr(tomllib.loads(DEMO.read_text(encoding="utf-8"))["ivr"])


@pytest.mark.parametrize(
    ("keys", "queue", "language", "skills"),
    [
        (["1", "1"], "sales", "en", {"en": 4}),
        (["2", "2", "1"], "support", "zh", {"zh": 4, "support": 3}),
        (["2", "2", "2"], "support", "zh", {"zh": 4, "support": 5}),
        (["1", "2", "*", "0"], "operator", "en", {"en": 4}),
        ([""], "operator", "en", {"en": 4}),  # no keys: English by default, then the operator
    ],
)
async def test_demo_paths(
    keys: list[str], queue: str, language: str, skills: dict[str, int]
) -> None:
    r = await run(demo(), keys + [""] * 6)
    assert r.outcome.kind == "queue"
    assert r.outcome.queue == queue
    assert r.outcome.language == language
    assert r.outcome.skills == skills
    assert r.session.played[0] == "welcome"


async def test_demo_complaints_with_confirmed_account() -> None:
    r = await run(demo(), ["1", "3", "123456#", "1"])
    assert r.outcome.queue == "complaints"
    assert r.outcome.priority == 2
    assert r.outcome.vars["account"] == "123456"


async def test_demo_complaints_without_account_still_reaches_complaints() -> None:
    r = await run(demo(), ["1", "3", "12#", "", "99#"])
    assert r.outcome.queue == "complaints"
    assert "account" not in r.outcome.vars
