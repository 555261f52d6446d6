"""IVR flow configuration: every mistake a supervisor can make is refused at load time with a
FlowError whose path names the exact node and key, and a reason a person can act on. Opening
hours (weekday ranges, end-exclusive hours, holidays) are checked here too."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hotline.config import ConfigError, parse_config
from ivr.flow import FlowError, IvrConfig, is_open, parse_days, parse_hours, parse_ivr

DEMO = Path(__file__).resolve().parents[3] / "hotline" / "demo.toml"

GOOD = """
[ivr]
entry = "main"
timezone = "Asia/Shanghai"
holidays = ["2026-10-01"]

[ivr.flows.main]
start = "menu"

[ivr.flows.main.nodes.menu]
type = "menu"
prompt = "main_menu"
choices = { "1" = "sales", "2" = "support", "*" = "menu", "#" = "other:start" }
default = "sales"

[ivr.flows.main.nodes.sales]
type = "queue"
queue = "sales"

[ivr.flows.main.nodes.support]
type = "collect"
prompt = "account_prompt"
var = "account"
min_digits = 4
max_digits = 10
pattern = "[0-9]+"
next = "hours"

[ivr.flows.main.nodes.hours]
type = "schedule"
open = { "mon-fri" = "09:00-18:00", "sat" = "10:00-13:00" }
open_next = "sales"
closed_next = "other"

[ivr.flows.main.nodes.other]
type = "goto"
flow = "other"
node = "vm"

[ivr.flows.other]
start = "start"

[ivr.flows.other.nodes.start]
type = "play"
prompt = "welcome"
next = "main:sales"

[ivr.flows.other.nodes.vm]
type = "voicemail"
queue = "support"
"""


def _table(text: str = GOOD) -> dict[str, Any]:
    return tomllib.loads(text)["ivr"]


def _nodes(**nodes: dict[str, Any]) -> dict[str, Any]:
    """An [ivr] table with one flow ``main`` made of ``nodes`` (the first is the start)."""
    return {"flows": {"main": {"start": next(iter(nodes)), "nodes": nodes}}}


END = {"type": "hangup"}


def _error(table: Any) -> FlowError:
    with pytest.raises(FlowError) as info:
        parse_ivr(table)
    return info.value


# -- a good flow -------------------------------------------------------------------------------


def test_good_flow_parses_with_cross_flow_references() -> None:
    cfg = parse_ivr(_table(), version=3)
    assert isinstance(cfg, IvrConfig)
    assert set(cfg.flows) == {"main", "other"}
    assert cfg.entry == "main"
    assert cfg.timezone == "Asia/Shanghai"
    assert cfg.holidays == frozenset({dt.date(2026, 10, 1)})
    assert cfg.version == 3
    assert cfg.flow("main").start == "menu"
    assert cfg.flow("main").nodes["menu"].type == "menu"
    assert cfg.flow("other").nodes["start"].get("next") == "main:sales"


def test_no_ivr_section_is_an_empty_config() -> None:
    assert parse_ivr(None).flows == {}
    assert parse_ivr({}).flows == {}


def test_toml_date_holidays_are_accepted() -> None:
    table = _table(GOOD.replace('holidays = ["2026-10-01"]', "holidays = [2026-10-01]"))
    assert parse_ivr(table).holidays == frozenset({dt.date(2026, 10, 1)})


def test_asking_for_an_undefined_flow_names_it() -> None:
    with pytest.raises(FlowError) as info:
        parse_ivr(_table()).flow("nope")
    assert info.value.path == "ivr.flows.nope"


def test_shipped_demo_ivr_parses() -> None:
    data = tomllib.loads(DEMO.read_text(encoding="utf-8"))
    cfg = parse_ivr(data["ivr"])
    main = cfg.flow(cfg.entry)
    assert main.start == "welcome"
    assert {"welcome", "language", "menu", "account", "operator"} <= set(main.nodes)
    terminals = {n.name for n in main.nodes.values() if n.type == "queue"}
    assert {"sales", "internet", "phone", "complaints", "operator"} <= terminals


# -- mistakes: each names the node and the key -------------------------------------------------


def test_unknown_node_type() -> None:
    err = _error(_nodes(a={"type": "menuu", "prompt": "p", "choices": {"1": "a"}}))
    assert err.path == "ivr.flows.main.nodes.a.type"
    assert "'menuu'" in err.reason and "menu" in err.reason and "collect" in err.reason


def test_missing_node_type() -> None:
    err = _error(_nodes(a={"prompt": "p"}))
    assert err.path == "ivr.flows.main.nodes.a.type"
    assert "None" in err.reason


def test_unknown_key_names_the_key_and_the_node_type() -> None:
    err = _error(_nodes(a={"type": "play", "prompt": "p", "next": "b", "timeout": 3}, b=END))
    assert err.path == "ivr.flows.main.nodes.a.timeout"
    assert err.reason == "unknown key for a play node"
    assert str(err) == "ivr.flows.main.nodes.a.timeout: unknown key for a play node"


def test_unknown_key_at_flow_and_ivr_level() -> None:
    table = _nodes(a=END)
    table["flows"]["main"]["begin"] = "a"
    assert _error(table).path == "ivr.flows.main.begin"
    assert _error({"entry": "main", "timezon": "UTC"}).path == "ivr.timezon"


@pytest.mark.parametrize(
    ("node", "key"),
    [
        ({"type": "play", "next": "b"}, "prompt"),
        ({"type": "menu", "prompt": "p"}, "choices"),
        ({"type": "collect", "next": "b"}, "var"),
        ({"type": "set", "next": "b"}, "vars"),
        ({"type": "branch", "cases": [{"var": "x", "equals": "1", "next": "b"}]}, "default"),
        ({"type": "schedule", "open": {"mon": "09:00-10:00"}, "open_next": "b"}, "closed_next"),
        ({"type": "queue_state", "next": "b"}, "queue"),
        ({"type": "goto"}, "flow"),
        ({"type": "voicemail"}, "queue"),
        ({"type": "transfer"}, "target"),
    ],
)
def test_missing_required_key(node: dict[str, Any], key: str) -> None:
    err = _error(_nodes(a=node, b=END))
    assert err.path == f"ivr.flows.main.nodes.a.{key}"
    assert err.reason == f"is required for a {node['type']} node"


def test_choice_to_an_undefined_node() -> None:
    err = _error(
        _nodes(
            menu={"type": "menu", "prompt": "p", "choices": {"1": "sales", "4": "salse"}}, sales=END
        )
    )
    assert err.path == "ivr.flows.main.nodes.menu.choices.4"
    assert "'salse'" in err.reason and "not a node" in err.reason


@pytest.mark.parametrize("key", ["12", "E", "x", ""])
def test_choice_key_that_is_not_a_dtmf_key(key: str) -> None:
    err = _error(_nodes(menu={"type": "menu", "prompt": "p", "choices": {key: "b"}}, b=END))
    assert err.path == f"ivr.flows.main.nodes.menu.choices.{key}"
    assert "0-9, *, # or A-D" in err.reason


def test_every_dtmf_key_is_a_valid_choice() -> None:
    choices = {k: "b" for k in "0123456789*#ABCD"}
    parse_ivr(_nodes(menu={"type": "menu", "prompt": "p", "choices": choices}, b=END))


def test_empty_choices_and_non_string_target() -> None:
    err = _error(_nodes(menu={"type": "menu", "prompt": "p", "choices": {}}))
    assert err.path == "ivr.flows.main.nodes.menu.choices"
    err = _error(_nodes(menu={"type": "menu", "prompt": "p", "choices": {"1": 2}}))
    assert err.path == "ivr.flows.main.nodes.menu.choices.1"
    assert err.reason == "expected a node name"


def test_bad_regex_pattern() -> None:
    err = _error(
        _nodes(a={"type": "collect", "var": "acct", "pattern": "[0-9", "next": "b"}, b=END)
    )
    assert err.path == "ivr.flows.main.nodes.a.pattern"
    assert err.reason.startswith("not a regular expression")


def test_bad_branch_regex() -> None:
    case = {"var": "caller", "matches": "(+86", "next": "b"}
    err = _error(_nodes(a={"type": "branch", "cases": [case], "default": "b"}, b=END))
    assert err.path == "ivr.flows.main.nodes.a.cases[0].matches"


def test_min_digits_above_max_digits() -> None:
    node = {"type": "collect", "var": "pin", "min_digits": 6, "max_digits": 4, "next": "b"}
    err = _error(_nodes(a=node, b=END))
    assert err.path == "ivr.flows.main.nodes.a.min_digits"
    assert err.reason == "is larger than max_digits"
    # the default max_digits (16) counts too
    node = {"type": "collect", "var": "pin", "min_digits": 17, "next": "b"}
    assert _error(_nodes(a=node, b=END)).path == "ivr.flows.main.nodes.a.min_digits"


@pytest.mark.parametrize(
    ("key", "value"),
    [("timeout", 0), ("timeout", "5"), ("retries", 11), ("retries", True), ("max_digits", 65)],
)
def test_numbers_out_of_range(key: str, value: Any) -> None:
    node = {"type": "collect", "var": "pin", "next": "b", key: value}
    err = _error(_nodes(a=node, b=END))
    assert err.path == f"ivr.flows.main.nodes.a.{key}"
    assert err.reason.startswith("expected a number from")


def test_bad_terminator() -> None:
    node = {"type": "collect", "var": "pin", "terminator": "x", "next": "b"}
    assert _error(_nodes(a=node, b=END)).path == "ivr.flows.main.nodes.a.terminator"
    node["terminator"] = ""  # no terminator is allowed
    parse_ivr(_nodes(a=node, b=END))


def test_bad_prompt_value() -> None:
    err = _error(_nodes(a={"type": "play", "prompt": ["welcome", ""], "next": "b"}, b=END))
    assert err.path == "ivr.flows.main.nodes.a.prompt"


def test_set_priority_out_of_range() -> None:
    err = _error(_nodes(a={"type": "set", "vars": {"priority": 12}, "next": "b"}, b=END))
    assert err.path == "ivr.flows.main.nodes.a.vars.priority"


def test_queue_skills_must_be_levels() -> None:
    err = _error(_nodes(a={"type": "queue", "queue": "q", "skills": {"en": 11}}))
    assert err.path == "ivr.flows.main.nodes.a.skills"


def test_branch_case_needs_exactly_one_test() -> None:
    case = {"var": "x", "equals": "1", "in": ["1"], "next": "b"}
    err = _error(_nodes(a={"type": "branch", "cases": [case], "default": "b"}, b=END))
    assert err.path == "ivr.flows.main.nodes.a.cases[0]"
    err = _error(
        _nodes(a={"type": "branch", "cases": [{"var": "x", "equals": "1"}], "default": "b"}, b=END)
    )
    assert err.path == "ivr.flows.main.nodes.a.cases[0]"
    assert err.reason == "needs var and next"


def test_branch_case_to_an_undefined_node() -> None:
    cases = [{"var": "x", "equals": "1", "next": "b"}, {"var": "x", "equals": "2", "next": "c"}]
    err = _error(_nodes(a={"type": "branch", "cases": cases, "default": "b"}, b=END))
    assert err.path == "ivr.flows.main.nodes.a.cases[1].next"


@pytest.mark.parametrize("key", ["next", "on_failure"])
def test_collect_refs_to_undefined_nodes(key: str) -> None:
    node = {"type": "collect", "var": "pin", "next": "b", key: "nowhere"}
    err = _error(_nodes(a=node, b=END))
    assert err.path == f"ivr.flows.main.nodes.a.{key}"
    assert "'nowhere'" in err.reason


def test_goto_unknown_flow() -> None:
    err = _error(_nodes(a={"type": "goto", "flow": "sales"}))
    assert err.path == "ivr.flows.main.nodes.a.flow"
    assert err.reason == "names flow 'sales', which ivr.flows does not define"


def test_goto_unknown_node_of_another_flow() -> None:
    table = _nodes(a={"type": "goto", "flow": "other", "node": "vm"})
    table["flows"]["other"] = {"start": "x", "nodes": {"x": END}}
    err = _error(table)
    assert err.path == "ivr.flows.main.nodes.a.node"
    assert err.reason == "flow 'other' has no node 'vm'"


def test_cross_flow_reference_accepted_and_checked() -> None:
    table = _nodes(a={"type": "play", "prompt": "p", "next": "other:x"})
    table["flows"]["other"] = {"start": "x", "nodes": {"x": END}}
    parse_ivr(table)
    table["flows"]["main"]["nodes"]["a"]["next"] = "other:y"
    err = _error(table)
    assert err.path == "ivr.flows.main.nodes.a.next"
    assert "'other:y'" in err.reason
    table["flows"]["main"]["nodes"]["a"]["next"] = "nosuch:x"
    assert _error(table).path == "ivr.flows.main.nodes.a.next"


def test_start_names_an_undefined_node() -> None:
    table = _nodes(a=END)
    table["flows"]["main"]["start"] = "welcome"
    err = _error(table)
    assert err.path == "ivr.flows.main.start"


def test_flow_without_nodes() -> None:
    assert _error({"flows": {"main": {"start": "a"}}}).path == "ivr.flows.main.nodes"


@pytest.mark.parametrize(
    ("days", "hours"),
    [
        ("mon-fry", "09:00-18:00"),
        ("weekdays", "09:00-18:00"),
        ("mon", "9-18"),
        ("sat", "25:00-26:00"),
    ],
)
def test_bad_schedule_days_or_hours(days: str, hours: str) -> None:
    node = {"type": "schedule", "open": {days: hours}, "open_next": "b", "closed_next": "b"}
    err = _error(_nodes(a=node, b=END))
    assert err.path == f"ivr.flows.main.nodes.a.open.{days}"
    assert repr(days) in err.reason or repr(hours) in err.reason


def test_schedule_open_must_be_a_table() -> None:
    node = {"type": "schedule", "open": "mon-fri 9-18", "open_next": "b", "closed_next": "b"}
    assert _error(_nodes(a=node, b=END)).path == "ivr.flows.main.nodes.a.open"


def test_overnight_or_empty_hours_are_refused() -> None:
    node = {
        "type": "schedule",
        "open": {"mon-fri": "22:00-06:00"},
        "open_next": "b",
        "closed_next": "b",
    }
    err = _error(_nodes(a=node, b=END))
    assert err.path == "ivr.flows.main.nodes.a.open.mon-fri"


def test_bad_timezone() -> None:
    table = _nodes(a=END)
    table["timezone"] = "Asia/Shangai"
    err = _error(table)
    assert err.path == "ivr.timezone"
    assert err.reason == "unknown time zone 'Asia/Shangai'"
    table["timezone"] = 8
    assert _error(table).path == "ivr.timezone"


def test_bad_holiday_date() -> None:
    table = _nodes(a=END)
    table["holidays"] = ["2026-10-01", "2026-13-01"]
    err = _error(table)
    assert err.path == "ivr.holidays[1]"
    assert err.reason == "not a date: '2026-13-01'"
    table["holidays"] = "2026-10-01"
    assert _error(table).path == "ivr.holidays"


def test_entry_names_an_undefined_flow() -> None:
    table = _nodes(a=END)
    table["entry"] = "hotline"
    err = _error(table)
    assert err.path == "ivr.entry"
    assert err.reason == "names flow 'hotline', which ivr.flows does not define"


def test_non_string_node_type_is_a_flow_error() -> None:
    err = _error(_nodes(a={"type": ["menu"]}))
    assert err.path == "ivr.flows.main.nodes.a.type"


@pytest.mark.parametrize("case", [{"above": "ten"}, {"below": "x"}, {"in": 5}])
def test_branch_comparison_values_are_checked(case: dict[str, Any]) -> None:
    node = {"type": "branch", "cases": [{"var": "x", "next": "b", **case}], "default": "b"}
    err = _error(_nodes(a=node, b=END))
    assert err.path.startswith("ivr.flows.main.nodes.a.cases[0]")


# -- through hotline.config: file, line and node path ------------------------------------------


def _config_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="site.toml")
    return info.value


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_shipped_demo_validates() -> None:
    assert parse_config(DEMO.read_text(encoding="utf-8"), file="demo.toml").ivr.flows


def test_broken_demo_choice_names_file_line_and_node() -> None:
    demo = DEMO.read_text(encoding="utf-8")
    assert '"3" = "account"' in demo
    broken = demo.replace('"3" = "account"', '"3" = "acount"')
    err = _config_error(broken)
    line = _line_of(broken, '"3" = "acount"')
    assert err.file == "site.toml"
    assert err.line == line
    assert err.path == "ivr.flows.main.nodes.menu.choices.3"
    assert str(err).startswith(f"site.toml:{line}: ivr.flows.main.nodes.menu.choices.3:")
    assert "'acount'" in str(err)


def test_broken_demo_node_type_points_at_its_line() -> None:
    demo = DEMO.read_text(encoding="utf-8")
    broken = demo.replace('type = "collect"', 'type = "colect"')
    err = _config_error(broken)
    assert err.path == "ivr.flows.main.nodes.account.type"
    assert err.line == _line_of(broken, 'type = "colect"')
    assert f"site.toml:{err.line}:" in str(err)


def test_broken_demo_timezone_points_at_its_line() -> None:
    demo = DEMO.read_text(encoding="utf-8")
    broken = demo.replace('timezone = "UTC"', 'timezone = "Mars/Olympus"')
    err = _config_error(broken)
    assert err.path == "ivr.timezone"
    assert err.line == _line_of(broken, "Mars/Olympus")


# -- opening hours -----------------------------------------------------------------------------


def _at(day: str, hhmm: str) -> dt.datetime:
    """A local time in the week of Monday 2026-03-02 (``day`` is mon..sun)."""
    base = dt.date(2026, 3, 2) + dt.timedelta(
        days=("mon", "tue", "wed", "thu", "fri", "sat", "sun").index(day)
    )
    h, m = (int(x) for x in hhmm.split(":"))
    return dt.datetime.combine(base, dt.time(h, m))


def test_parse_days() -> None:
    assert parse_days("mon-fri") == {0, 1, 2, 3, 4}
    assert parse_days("sat") == {5}
    assert parse_days("mon, wed,FRI") == {0, 2, 4}
    assert parse_days("sat-mon") == {5, 6, 0}
    assert parse_days("fri-tue") == {4, 5, 6, 0, 1}
    assert parse_days("sun-sun") == {6}
    for bad in ("", "monday", "mon-", "mon-fri,", "1-5"):
        with pytest.raises(ValueError):
            parse_days(bad)


def test_parse_hours() -> None:
    assert parse_hours("09:00-18:00") == (dt.time(9), dt.time(18))
    assert parse_hours(" 9:30 - 17:45 ") == (dt.time(9, 30), dt.time(17, 45))
    start, end = parse_hours("00:00-24:00")
    assert start == dt.time(0) and end > dt.time(23, 59, 59)
    for bad in ("9-18", "09:00-24:30", "24:00-24:00", "09:60-10:00", "09:00 to 18:00"):
        with pytest.raises(ValueError):
            parse_hours(bad)


def test_is_open_weekdays_and_end_exclusive_hours() -> None:
    opened = {"mon-fri": "09:00-18:00", "sat": "10:00-13:00"}
    none: frozenset[dt.date] = frozenset()
    assert not is_open(opened, none, _at("mon", "08:59"))
    assert is_open(opened, none, _at("mon", "09:00"))
    assert is_open(opened, none, _at("fri", "17:59"))
    assert not is_open(opened, none, _at("fri", "18:00"))  # the end is exclusive
    assert is_open(opened, none, _at("sat", "12:30"))
    assert not is_open(opened, none, _at("sat", "13:00"))
    assert not is_open(opened, none, _at("sun", "12:00"))


def test_is_open_wraps_round_the_week() -> None:
    opened = {"sat-mon": "08:00-20:00"}
    none: frozenset[dt.date] = frozenset()
    assert [
        is_open(opened, none, _at(d, "12:00")) for d in ("mon", "tue", "fri", "sat", "sun")
    ] == [
        True,
        False,
        False,
        True,
        True,
    ]


def test_is_open_until_midnight() -> None:
    opened = {"mon-sun": "18:00-24:00"}
    none: frozenset[dt.date] = frozenset()
    assert is_open(opened, none, _at("tue", "23:59"))
    assert is_open(opened, none, _at("tue", "23:59").replace(second=59))
    assert not is_open(opened, none, _at("wed", "00:00"))
    assert not is_open(opened, none, _at("wed", "17:59"))


def test_is_open_holidays_close_the_whole_day() -> None:
    opened = {"mon-sun": "00:00-24:00"}
    holidays = frozenset({dt.date(2026, 3, 3)})
    assert is_open(opened, holidays, _at("mon", "23:59"))
    assert not is_open(opened, holidays, _at("tue", "00:00"))
    assert not is_open(opened, holidays, _at("tue", "12:00"))
    assert is_open(opened, holidays, _at("wed", "00:00"))


def test_overlapping_entries_open_if_any_matches() -> None:
    opened = {"mon-fri": "09:00-12:00", "mon": "14:00-16:00"}
    none: frozenset[dt.date] = frozenset()
    assert is_open(opened, none, _at("mon", "15:00"))
    assert not is_open(opened, none, _at("tue", "15:00"))
