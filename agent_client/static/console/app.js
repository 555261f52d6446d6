// app.js: the supervisor console. Everything shown comes from the API and the event stream:
// the page never decides a state itself, it asks again when the stream says something changed.
//
//   wallboard  GET /api/stats/queues (+ `queue` and `stats` events), GET /api/agents,
//              GET /api/stats/queues/{queue}/intervals (charts)
//   agents     GET /api/agents; POST .../ready, .../pause, .../logout; PUT .../skills;
//              POST|PATCH|DELETE .../call/monitor, GET /api/monitoring (when the service has
//              them: /api/openapi.json)
//   routing    GET /api/routing, /api/routing/versions; POST /api/routing/validate, what-if,
//              apply (expected_version), rollback

import { api, ApiError, signIn, signOut, whoAmI } from "/common/api.js";
import { EventStream } from "/common/stream.js";
import { I18n } from "/common/i18n.js";
import { barsChart, linesChart } from "./charts.js";
import { STRINGS } from "./strings.js";

const i18n = new I18n(STRINGS, "console");
const t = (key, vars) => i18n.t(key, vars);
const $ = (sel) => document.querySelector(sel);

const S = {
  me: null,
  view: "wallboard",
  stats: null,
  agents: [],
  agentsAt: 0,
  routing: null,
  versions: [],
  pauseReasons: [],
  monitorRoute: false,
  monitoring: null, // mine now, from GET /api/monitoring: {agent_id, mode, state, ...}
  monitorings: [], // everyone's
  chartQueue: null,
  intervals: null,
  whatIf: null,
  editQueue: null,
  stream: null,
};

// -- small DOM helpers (text only: nothing from the server becomes HTML) ---------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

const dash = "—";
const pct = (x) => (x === null || x === undefined ? dash : `${(x * 100).toFixed(1)}%`);
function dur(s) {
  if (s === null || s === undefined) return dash;
  s = Math.max(0, Math.round(s));
  if (s < 60) return t("sec", { s });
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}:${String(s % 60).padStart(2, "0")}`;
  return `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}
const time = (iso) => (iso ? new Date(iso).toLocaleString(i18n.lang === "zh" ? "zh-CN" : "en-GB") : dash);

function notice(text, kind = "error") {
  const n = $("#notice");
  if (!text) { n.hidden = true; return; }
  n.textContent = text;
  n.dataset.kind = kind;
  n.hidden = false;
}

function errorText(err) {
  if (err instanceof ApiError) {
    const details = (err.details || []).map((d) => `${d.path}: ${d.reason}`).join("; ");
    return `${err.message}${details ? ` (${details})` : ""} [${err.status} ${err.code}]`;
  }
  return String(err);
}

// -- sign-in ----------------------------------------------------------------------------------

async function boot() {
  i18n.apply();
  $("#lang").value = i18n.lang;
  $("#lang").addEventListener("change", (e) => i18n.set(e.target.value));
  i18n.onChange(() => { $("#lang").value = i18n.lang; renderAll(); });
  $("#signin-form").addEventListener("submit", onSignIn);
  $("#sign-out").addEventListener("click", onSignOut);
  for (const b of document.querySelectorAll("#tabs [role=tab]")) {
    b.addEventListener("click", () => show(b.dataset.view));
    b.addEventListener("keydown", onTabKey);
  }
  document.addEventListener("keydown", onKey);
  setupRoutingForm();
  let me = null;
  try { me = await whoAmI(); } catch (err) { notice(errorText(err)); }
  if (me && isSupervisor(me.role)) await start(me);
  else showSignIn(me ? t("refused", { user: me.user }) : "");
  setInterval(tick, 1000);
}

const isSupervisor = (role) => role === "supervisor" || role === "admin";

function showSignIn(message) {
  $("#signin").hidden = false;
  $("#tabs").hidden = true;
  $("#sign-out").hidden = true;
  $("#me").textContent = "";
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  const err = $("#signin-error");
  err.textContent = message || "";
  err.hidden = !message;
  $("#user").focus();
}

async function onSignIn(e) {
  e.preventDefault();
  const err = $("#signin-error");
  err.hidden = true;
  try {
    const info = await signIn($("#user").value.trim(), $("#password").value);
    $("#password").value = "";
    if (!isSupervisor(info.role)) {
      await signOut().catch(() => {});
      showSignIn(t("refused", { user: info.user }));
      return;
    }
    await start(info);
  } catch (ex) {
    const code = ex instanceof ApiError ? ex.code : "";
    showSignIn(code === "sign_in_failed" ? t("signin_failed") : code === "locked" ? t("signin_locked") : errorText(ex));
  }
}

async function onSignOut() {
  if (S.stream) S.stream.stop();
  S.stream = null;
  await signOut().catch(() => {});
  S.me = null;
  showSignIn("");
}

async function start(me) {
  S.me = me;
  $("#signin").hidden = true;
  $("#tabs").hidden = false;
  $("#sign-out").hidden = false;
  $("#me").textContent = `${me.user} (${t("role_" + me.role)})`;
  await Promise.all([loadOpenApi(), loadStats(), loadAgents(), loadRouting()]);
  await loadMonitoring();
  show(location.hash.slice(1) || S.view);
  S.stream = new EventStream({
    onEvent,
    onReset: () => { loadStats(); loadAgents(); loadRouting(); loadMonitoring(); },
    onStatus: (st) => { const l = $("#live"); l.dataset.state = st; l.textContent = t("live_" + st); },
  });
  S.stream.start();
}

// -- views and keys -------------------------------------------------------------------------

function show(view) {
  if (!["wallboard", "agents", "routing"].includes(view)) view = "wallboard";
  S.view = view;
  for (const b of document.querySelectorAll("#tabs [role=tab]")) {
    const on = b.dataset.view === view;
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
  }
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${view}`;
  if (location.hash !== `#${view}`) history.replaceState(null, "", `#${view}`);
  if (view === "wallboard") loadIntervals();
}

function onTabKey(e) {
  const tabs = [...document.querySelectorAll("#tabs [role=tab]")];
  const i = tabs.indexOf(e.currentTarget);
  let j = null;
  if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
  if (e.key === "ArrowLeft") j = (i + tabs.length - 1) % tabs.length;
  if (j === null) return;
  e.preventDefault();
  tabs[j].focus();
  show(tabs[j].dataset.view);
}

function onKey(e) {
  if (!S.me || e.ctrlKey || e.metaKey || e.altKey) return;
  const tag = (e.target.tagName || "").toLowerCase();
  if (["input", "textarea", "select"].includes(tag) || e.target.isContentEditable) return;
  const views = { 1: "wallboard", 2: "agents", 3: "routing" };
  if (views[e.key]) { show(views[e.key]); e.preventDefault(); }
  else if (e.key === "l" || e.key === "L") { i18n.set(i18n.lang === "en" ? "zh" : "en"); e.preventDefault(); }
  else if (e.key === "r" || e.key === "R") { loadStats(); loadAgents(); loadRouting(); loadIntervals(); e.preventDefault(); }
}

// -- the event stream -----------------------------------------------------------------------

const pending = {};
function soon(name, fn, ms = 250) {
  if (pending[name]) return;
  pending[name] = setTimeout(() => { pending[name] = null; fn(); }, ms);
}

// The day charts follow the floor: anything that happens in the charted queue (a call queued,
// answered, abandoned ...) and every statistics tick for it ask for its intervals again, at
// most once per INTERVALS_MS, and only while the wallboard is shown (showing it reloads them).
const INTERVALS_MS = 1500;
function chartsFollow(d) {
  if (S.view === "wallboard" && d.queue && d.queue === S.chartQueue) soon("intervals", loadIntervals, INTERVALS_MS);
}

function onEvent(msg) {
  const d = msg.data || {};
  chartsFollow(d);
  switch (msg.kind) {
    case "queue": {
      const q = S.stats && S.stats.queues.find((x) => x.queue === d.queue);
      if (q) {
        q.waiting = d.waiting;
        q.longest_wait_seconds = d.longest_wait_seconds;
        q._at = performance.now();
        renderWallboard();
      }
      soon("stats", loadStats);
      break;
    }
    case "stats":
      if (!S.stats) break;
      if (d.queue === null || d.queue === undefined) {
        if (d.today) S.stats.total = d.today;
      } else {
        const i = S.stats.queues.findIndex((x) => x.queue === d.queue);
        const q = { ...d, _at: performance.now() };
        if (i >= 0) S.stats.queues[i] = q; else S.stats.queues.push(q);
      }
      renderWallboard();
      break;
    case "config_changed":
      soon("routing", loadRouting);
      soon("agents", loadAgents);
      break;
    default:
      if (msg.kind.startsWith("monitor")) soon("monitoring", loadMonitoring, 100);
      if (["agent_state", "offer", "call_offered", "offer_cancelled", "call_answered", "answer_refused",
        "call_ended", "call_queued", "call_abandoned", "call_voicemail", "call_left", "call_overflowed",
        "call_refused"].includes(msg.kind) || msg.kind.startsWith("monitor")) {
        soon("agents", loadAgents);
        soon("stats", loadStats);
      }
  }
}

// -- loading --------------------------------------------------------------------------------

async function guarded(fn) {
  try { await fn(); } catch (err) {
    if (err instanceof ApiError && err.status === 401) { showSignIn(t("signed_out")); return; }
    notice(errorText(err));
  }
}

async function loadOpenApi() {
  await guarded(async () => {
    const doc = await api("/api/openapi.json");
    S.monitorRoute = Boolean(doc.paths["/api/agents/{agent_id}/call/monitor"]);
    const pause = (doc.components.schemas || {}).PauseRequest;
    const reason = pause && pause.properties && pause.properties.reason;
    S.pauseReasons = (reason && (reason.enum || (reason.const !== undefined ? [reason.const] : null))) || [];
  });
}

async function loadStats() {
  await guarded(async () => {
    const stats = await api("/api/stats/queues");
    const now = performance.now();
    for (const q of stats.queues) q._at = now;
    S.stats = stats;
    if (!S.chartQueue && stats.queues.length) S.chartQueue = stats.queues[0].queue;
    renderWallboard();
  });
}

async function loadAgents() {
  await guarded(async () => {
    S.agents = await api("/api/agents");
    S.agentsAt = performance.now();
    renderAgents();
    renderWallboard();
  });
}

async function loadMonitoring() {
  if (!S.monitorRoute || !S.me) return;
  await guarded(async () => {
    S.monitorings = (await api("/api/monitoring")).filter((m) => m.state !== "ended");
    S.monitoring = S.monitorings.find((m) => m.supervisor === S.me.user) || null;
    renderAgents();
  });
}

async function loadIntervals() {
  if (!S.chartQueue || !S.me) return;
  await guarded(async () => {
    S.intervals = await api(`/api/stats/queues/${encodeURIComponent(S.chartQueue)}/intervals`);
    renderCharts();
  });
}

async function loadRouting() {
  await guarded(async () => {
    const [state, versions] = await Promise.all([api("/api/routing"), api("/api/routing/versions")]);
    const changed = !S.routing || S.routing.version !== state.version;
    S.routing = state;
    S.versions = versions;
    if (!S.editQueue || !state.config.queues[S.editQueue]) S.editQueue = Object.keys(state.config.queues)[0] || null;
    if (changed) fillRoutingForm();
    renderRouting();
  });
}

// -- wallboard ------------------------------------------------------------------------------

function waitNow(q) {
  // The longest wait as the service said it, plus the time since it said it (while calls wait).
  if (!q.waiting) return 0;
  return q.longest_wait_seconds + (performance.now() - (q._at || performance.now())) / 1000;
}

function tile(label, value, opts = {}) {
  return h("div", { class: `tile ${opts.cls || ""}`, dataset: { figure: opts.figure || "" } },
    h("span", { class: "label", text: label }),
    h("span", { class: "value", text: value }),
    opts.sub ? h("span", { class: "sub", text: opts.sub }) : null);
}

const STATES = ["ready", "ringing", "on_call", "wrap_up", "paused", "logged_out"];
const AGENT_STATE_KEY = { idle: "ready", reserved: "ringing", on_call: "on_call", wrap_up: "wrap_up", paused: "paused", logged_out: "logged_out" };

function stateBar(counts) {
  const total = STATES.reduce((a, k) => a + (counts[k] || 0), 0) || 1;
  const bar = h("div", { class: "statebar", role: "img", "aria-label": STATES.map((k) => `${t("st_" + k)} ${counts[k] || 0}`).join(", ") });
  for (const k of STATES) {
    if (!counts[k]) continue;
    bar.append(h("span", { class: `seg st-${k}`, style: `flex-grow:${counts[k] / total}`, title: `${t("st_" + k)}: ${counts[k]}` }));
  }
  const keys = h("ul", { class: "statekeys" });
  for (const k of STATES) keys.append(h("li", { class: `st-${k}`, dataset: { state: k } }, h("span", { class: "dot" }), `${t("st_" + k)} `, h("b", { text: String(counts[k] || 0) })));
  return [bar, keys];
}

function renderWallboard() {
  if (!S.stats) return;
  const st = S.stats;
  const total = st.total;
  const waiting = st.queues.reduce((a, q) => a + q.waiting, 0);
  const longest = Math.max(0, ...st.queues.map(waitNow));
  const floor = {};
  for (const a of S.agents) { const k = AGENT_STATE_KEY[a.state] || a.state; floor[k] = (floor[k] || 0) + 1; }
  const totals = $("#totals");
  totals.replaceChildren(
    tile(t("waiting"), String(waiting), { figure: "waiting", cls: waiting ? "hot" : "" }),
    tile(t("longest_wait"), dur(longest), { figure: "longest" }),
    tile(t("service_level"), pct(total.service_level), { figure: "service_level", sub: t("answered_of", { a: total.answered, o: total.offered }) }),
    tile(t("asa"), dur(total.asa_seconds), { figure: "asa" }),
    tile(t("abandon_rate"), pct(total.abandon_rate), { figure: "abandon_rate", sub: t("abandoned_n", { n: total.abandoned }) }),
    tile(t("occupancy"), pct(total.occupancy), { figure: "occupancy" }),
    h("div", { class: "tile wide", dataset: { figure: "floor" } }, h("span", { class: "label", text: t("agents_by_state") }), ...stateBar(floor)),
  );
  const queues = $("#queues");
  queues.replaceChildren(...st.queues.map((q) => {
    const f = q.today;
    return h("article", { class: `card queue ${q.waiting ? "has-waiting" : ""}`, dataset: { queue: q.queue }, "aria-label": `${t("queue")} ${q.queue}` },
      h("header", {}, h("h3", { text: q.queue }), h("span", { class: "target", text: t("target", { s: Math.round(q.service_level_seconds) }) })),
      h("dl", { class: "figures" },
        h("div", { class: "fig waiting" }, h("dt", { text: t("waiting") }), h("dd", { class: "waiting-n", text: String(q.waiting) })),
        h("div", { class: "fig longest" }, h("dt", { text: t("longest_wait") }), h("dd", { class: "longest-s", dataset: { queue: q.queue }, text: dur(waitNow(q)) })),
        h("div", { class: "fig" }, h("dt", { text: t("service_level") }), h("dd", { class: "sl", text: pct(f.service_level) })),
        h("div", { class: "fig" }, h("dt", { text: t("asa") }), h("dd", { class: "asa", text: dur(f.asa_seconds) })),
        h("div", { class: "fig" }, h("dt", { text: t("abandon_rate") }), h("dd", { class: "abandon", text: pct(f.abandon_rate) })),
        h("div", { class: "fig" }, h("dt", { text: t("occupancy") }), h("dd", { class: "occupancy", text: pct(f.occupancy) })),
        h("div", { class: "fig" }, h("dt", { text: t("offered") }), h("dd", { class: "offered", text: String(f.offered) })),
        h("div", { class: "fig" }, h("dt", { text: t("answered") }), h("dd", { class: "answered", text: String(f.answered) })),
      ),
      ...stateBar(q.agents));
  }));
  const sel = $("#chart-queue");
  const names = st.queues.map((q) => q.queue);
  if ([...sel.options].map((o) => o.value).join() !== names.join()) {
    sel.replaceChildren(...names.map((n) => h("option", { value: n, text: n })));
    sel.onchange = () => { S.chartQueue = sel.value; loadIntervals(); };
  }
  if (S.chartQueue) sel.value = S.chartQueue;
}

function renderCharts() {
  const d = S.intervals;
  if (!d) return;
  $("#chart-calls").replaceChildren(barsChart(d.intervals, [
    { key: "offered", label: t("offered"), cls: "s-offered" },
    { key: "answered", label: t("answered"), cls: "s-answered" },
    { key: "abandoned", label: t("abandoned"), cls: "s-abandoned" },
  ], { title: `${t("chart_calls")} (${d.queue})` }));
  $("#chart-sl").replaceChildren(linesChart(d.intervals, [
    { key: "service_level", label: t("service_level"), cls: "s-sl" },
    { key: "abandon_rate", label: t("abandon_rate"), cls: "s-abandoned" },
  ], { title: `${t("chart_sl")} (${d.queue})` }));
}

// -- agents ---------------------------------------------------------------------------------

function inState(a) { return a.seconds_in_state + (performance.now() - S.agentsAt) / 1000; }

function skillsText(skills) {
  return Object.entries(skills || {}).map(([k, v]) => `${k}=${v}`).join(" ");
}

function parseSkills(text) {
  const out = {};
  for (const part of text.split(/[\s,;]+/).filter(Boolean)) {
    const m = part.match(/^([^=:]+)[=:](\d+)$/);
    if (!m) throw new Error(t("bad_skills", { part }));
    out[m[1]] = Number(m[2]);
  }
  return out;
}

async function act(label, fn) {
  notice("");
  try { await fn(); notice(label, "ok"); } catch (err) { notice(errorText(err)); }
  loadAgents();
}

function agentRow(a) {
  const id = encodeURIComponent(a.agent_id);
  const stateText = t("as_" + a.state) + (a.reason ? ` · ${t("reason_" + a.reason) === "reason_" + a.reason ? a.reason : t("reason_" + a.reason)}` : "");
  const reasonSel = h("select", { class: "reason", "aria-label": t("pause_reason") },
    ...S.pauseReasons.map((r) => h("option", { value: r, text: t("reason_" + r) === "reason_" + r ? r : t("reason_" + r) })));
  const actions = h("div", { class: "actions" },
    h("button", { type: "button", class: "do-ready", disabled: a.state === "idle" || undefined, text: t("ready"),
      onclick: () => act(t("done_ready", { a: a.agent_id }), () => api(`/api/agents/${id}/ready`, { method: "POST" })) }),
    h("span", { class: "pause-group" }, reasonSel,
      h("button", { type: "button", class: "do-pause", text: t("pause"),
        onclick: () => act(t("done_pause", { a: a.agent_id }), () => api(`/api/agents/${id}/pause`, { method: "POST", body: { reason: reasonSel.value } })) })),
    h("button", { type: "button", class: "do-logout", disabled: a.state === "logged_out" || undefined, text: t("logout"),
      onclick: () => act(t("done_logout", { a: a.agent_id }), () => api(`/api/agents/${id}/logout`, { method: "POST" })) }),
  );
  if (S.monitorRoute && a.call) {
    const mine = S.monitoring && S.monitoring.agent_id === a.agent_id;
    const group = h("span", { class: "monitor-group", role: "group", "aria-label": t("monitor") });
    for (const mode of ["listen", "whisper", "barge"]) {
      group.append(h("button", { type: "button", class: `do-${mode}`, "aria-pressed": String(Boolean(mine && S.monitoring.mode === mode)), text: t("mon_" + mode),
        onclick: () => monitor(a.agent_id, mode) }));
    }
    if (mine) group.append(h("button", { type: "button", class: "do-stop danger", text: t("mon_stop"), onclick: () => stopMonitor() }));
    actions.append(group);
  }
  const skills = h("td", { class: "skills", "data-label": t("col_skills") },
    h("span", { class: "skills-text", text: skillsText(a.skills) || dash }), " ",
    h("button", { type: "button", class: "do-skills link", text: t("edit"), "aria-label": t("edit_skills_of", { a: a.agent_id }),
      onclick: (e) => editSkills(e.currentTarget.closest("td"), a) }));
  return h("tr", { dataset: { agent: a.agent_id, state: a.state } },
    h("td", { "data-label": t("col_agent") }, h("b", { text: a.name || a.agent_id }), h("div", { class: "muted", text: `${a.agent_id} · ${a.queues.join(", ")}` })),
    h("td", { "data-label": t("col_state") }, h("span", { class: `badge st-${AGENT_STATE_KEY[a.state] || a.state} state`, text: stateText }),
      a.wrap_up_remaining !== null && a.wrap_up_remaining !== undefined ? h("div", { class: "muted", text: t("wrap_left", { s: Math.round(a.wrap_up_remaining) }) }) : null),
    h("td", { "data-label": t("col_time"), class: "in-state", dataset: { agent: a.agent_id } }, dur(inState(a))),
    h("td", { "data-label": t("col_call"), class: "call" }, a.call ? [h("span", { text: a.call.caller || dash }), h("div", { class: "muted", text: a.call.case_id ? t("case_n", { n: a.call.case_id }) : a.call.call_id }),
      ...S.monitorings.filter((m) => m.agent_id === a.agent_id).map((m) => h("div", { class: "muted monitored", text: t("monitored_by", { u: m.supervisor, m: t("mon_" + m.mode), s: t("ms_" + m.state) }) }))] : dash),
    skills,
    h("td", { "data-label": t("col_actions") }, actions));
}

function editSkills(td, a) {
  const input = h("input", { value: skillsText(a.skills), "aria-label": t("edit_skills_of", { a: a.agent_id }), spellcheck: "false", class: "skills-input" });
  const save = h("button", { type: "submit", class: "primary", text: t("save") });
  const cancel = h("button", { type: "button", text: t("cancel"), onclick: () => renderAgents() });
  const form = h("form", { class: "inline-form" }, input, save, cancel);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    let skills;
    try { skills = parseSkills(input.value); } catch (err) { notice(err.message); return; }
    act(t("done_skills", { a: a.agent_id }), () => api(`/api/agents/${encodeURIComponent(a.agent_id)}/skills`, { method: "PUT", body: { skills } }));
  });
  form.addEventListener("keydown", (e) => { if (e.key === "Escape") renderAgents(); });
  td.replaceChildren(form);
  S.editing = a.agent_id;
  input.focus();
}

async function monitor(agent, mode) {
  const path = `/api/agents/${encodeURIComponent(agent)}/call/monitor`;
  const same = S.monitoring && S.monitoring.agent_id === agent;
  await act(t("done_monitor", { a: agent, m: t("mon_" + mode) }), () => api(path, { method: same ? "PATCH" : "POST", body: { mode } }));
  await loadMonitoring();
}

async function stopMonitor() {
  if (!S.monitoring) return;
  const agent = S.monitoring.agent_id;
  await act(t("done_monitor_stop", { a: agent }), () => api(`/api/agents/${encodeURIComponent(agent)}/call/monitor`, { method: "DELETE" }));
  await loadMonitoring();
}

function renderMonitoring() {
  const box = $("#monitoring");
  const m = S.monitoring;
  if (!m) { box.hidden = true; return; }
  box.hidden = false;
  box.replaceChildren(h("span", { class: "monitoring-text", text: t("monitoring", { a: m.agent_id, m: t("mon_" + m.mode), s: t("ms_" + m.state) }) }), " ",
    h("button", { type: "button", class: "danger", text: t("mon_stop"), onclick: () => stopMonitor() }));
}

function renderAgents() {
  S.editing = null;
  const counts = {};
  for (const a of S.agents) { const k = AGENT_STATE_KEY[a.state] || a.state; counts[k] = (counts[k] || 0) + 1; }
  $("#floor").replaceChildren(...stateBar(counts));
  renderMonitoring();
  const body = $("#agents tbody");
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("tr[data-agent]");
  const focusKey = focused ? [focused.dataset.agent, document.activeElement.className] : null;
  body.replaceChildren(...S.agents.map(agentRow));
  if (focusKey) {
    const row = body.querySelector(`tr[data-agent="${CSS.escape(focusKey[0])}"]`);
    const el = row && focusKey[1] && row.querySelector("." + focusKey[1].split(" ")[0]);
    if (el) el.focus();
  }
}

function tick() {
  if (!S.me) return;
  for (const td of document.querySelectorAll("td.in-state")) {
    const a = S.agents.find((x) => x.agent_id === td.dataset.agent);
    if (a) td.textContent = dur(inState(a));
  }
  if (S.stats) {
    for (const dd of document.querySelectorAll("dd.longest-s")) {
      const q = S.stats.queues.find((x) => x.queue === dd.dataset.queue);
      if (q) dd.textContent = dur(waitNow(q));
    }
    const tl = document.querySelector('[data-figure="longest"] .value');
    if (tl) tl.textContent = dur(Math.max(0, ...S.stats.queues.map(waitNow)));
  }
}

// -- routing --------------------------------------------------------------------------------

function defaultWorkload(queue) {
  return `[simulation]\nduration_hours = 2\nseed = 1\n\n[[arrivals]]\nqueue = "${queue}"\nrate_per_hour = 30\nhandle_time = { distribution = "exponential", mean_seconds = 180 }\npatience = { distribution = "exponential", mean_seconds = 120 }\n`;
}

function setupRoutingForm() {
  $("#r-queue").addEventListener("change", (e) => { S.editQueue = e.target.value; S.whatIf = null; fillRoutingForm(); renderRouting(); });
  for (const id of ["#r-strategy", "#r-skills", "#r-widening"]) $(id).addEventListener("input", () => soon("validate", validate, 400));
  $("#r-weights").addEventListener("input", () => soon("validate", validate, 400));
  for (const r of document.querySelectorAll("input[name=r-source]")) r.addEventListener("change", sourceChanged);
  $("#r-whatif").addEventListener("click", whatIf);
  $("#r-apply").addEventListener("click", applyRouting);
  $("#r-reset").addEventListener("click", () => { S.whatIf = null; fillRoutingForm(); renderRouting(); });
  sourceChanged();
}

function sourceChanged() {
  const hist = document.querySelector("input[name=r-source]:checked").value === "history";
  $("#r-hours-label").hidden = !hist;
  $("#r-workload-label").hidden = hist;
}

function fillRoutingForm() {
  const r = S.routing;
  if (!r || !S.editQueue) return;
  const q = r.config.queues[S.editQueue];
  $("#r-queue").replaceChildren(...Object.keys(r.config.queues).map((n) => h("option", { value: n, text: n })));
  $("#r-queue").value = S.editQueue;
  $("#r-strategy").replaceChildren(...r.strategies.map((n) => h("option", { value: n, text: n })));
  $("#r-strategy").value = q.strategy;
  const fs = $("#r-weights");
  fs.replaceChildren(h("legend", { text: t("weights") }), ...r.weight_keys.map((k) =>
    h("label", { class: "weight" }, h("span", { text: t("w_" + k) === "w_" + k ? k : t("w_" + k) }),
      h("input", { type: "number", step: "0.5", min: "0", name: k, "data-weight": k, value: q.weights && q.weights[k] !== undefined ? q.weights[k] : "" }))));
  $("#r-skills").value = skillsText(q.skills);
  $("#r-widening").value = JSON.stringify(q.widening || []);
  if (!$("#r-workload").value || $("#r-workload").dataset.queue !== S.editQueue) {
    $("#r-workload").value = defaultWorkload(S.editQueue);
    $("#r-workload").dataset.queue = S.editQueue;
  }
  $("#r-changes").replaceChildren();
  $("#r-status").textContent = "";
}

function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

/** The form as a JSON merge patch over the current [acd] table (only what changed). */
function proposal() {
  const q = S.routing.config.queues[S.editQueue];
  const patch = {};
  const strategy = $("#r-strategy").value;
  if (strategy !== q.strategy) patch.strategy = strategy;
  const weights = {};
  for (const inp of document.querySelectorAll("#r-weights input[data-weight]")) {
    if (inp.value === "") continue;
    const v = Number(inp.value);
    const cur = q.weights ? q.weights[inp.dataset.weight] : undefined;
    if (cur === undefined || Number(cur) !== v) weights[inp.dataset.weight] = v;
  }
  if (Object.keys(weights).length) patch.weights = weights;
  const skills = parseSkills($("#r-skills").value);
  if (!same(skills, q.skills || {})) {
    const p = {};
    for (const k of Object.keys(q.skills || {})) if (!(k in skills)) p[k] = null;
    Object.assign(p, skills);
    patch.skills = p;
  }
  let widening;
  try { widening = JSON.parse($("#r-widening").value || "[]"); } catch { throw new Error(t("bad_widening")); }
  if (!same(widening, q.widening || [])) patch.widening = widening;
  return Object.keys(patch).length ? { queues: { [S.editQueue]: patch } } : {};
}

function showChanges(report) {
  const box = $("#r-changes");
  const items = [];
  for (const c of report.changes || []) items.push(h("li", { class: "change" }, h("code", { text: c.path }), ` ${JSON.stringify(c.current)} → ${JSON.stringify(c.proposed)}`));
  for (const i of report.issues || []) items.push(h("li", { class: "issue error" }, h("code", { text: i.path }), ` ${i.reason}`));
  box.replaceChildren(items.length ? h("ul", {}, ...items) : h("p", { class: "muted", text: t("no_changes") }));
}

async function validate() {
  let changes;
  try { changes = proposal(); } catch (err) { $("#r-changes").replaceChildren(h("p", { class: "error", text: err.message })); return null; }
  try {
    const report = await api("/api/routing/validate", { method: "POST", body: { proposed: { changes } } });
    showChanges(report);
    return report;
  } catch (err) { $("#r-changes").replaceChildren(h("p", { class: "error", text: errorText(err) })); return null; }
}

async function whatIf() {
  const status = $("#r-status");
  let changes;
  try { changes = proposal(); } catch (err) { status.textContent = err.message; return; }
  const body = { proposed: { changes }, runs: Number($("#r-runs").value) || 3 };
  if (document.querySelector("input[name=r-source]:checked").value === "history") body.from_history = { hours: Number($("#r-hours").value) || 8 };
  else body.scenario = $("#r-workload").value;
  const btn = $("#r-whatif");
  btn.disabled = true;
  status.textContent = t("predicting");
  $("#whatif").setAttribute("aria-busy", "true");
  try {
    S.whatIf = { report: await api("/api/routing/what-if", { method: "POST", body }), changes };
    status.textContent = t("predicted", { s: S.whatIf.report.elapsed_seconds.toFixed(1) });
    validate();
  } catch (err) {
    status.textContent = errorText(err);
  } finally {
    btn.disabled = false;
    $("#whatif").removeAttribute("aria-busy");
    renderWhatIf();
  }
}

async function applyRouting() {
  const status = $("#r-status");
  let changes;
  try { changes = proposal(); } catch (err) { status.textContent = err.message; return; }
  try {
    const v = await api("/api/routing/apply", {
      method: "POST",
      body: { proposed: { changes }, comment: $("#r-comment").value, expected_version: S.routing.version },
    });
    $("#r-comment").value = "";
    status.textContent = t("applied", { v: v.version });
    await loadRouting();
  } catch (err) {
    status.textContent = err instanceof ApiError && err.code === "version_changed" ? t("version_changed") : errorText(err);
    if (err instanceof ApiError && err.code === "version_changed") loadRouting();
  }
}

async function rollback(version) {
  const status = $("#r-status");
  try {
    const v = await api("/api/routing/rollback", { method: "POST", body: { version, comment: t("rollback_comment", { v: version }) } });
    status.textContent = t("rolled_back", { v: version, n: v.version });
    S.whatIf = null;
    await loadRouting();
    fillRoutingForm();
    renderRouting();
    status.textContent = t("rolled_back", { v: version, n: v.version });
  } catch (err) { status.textContent = errorText(err); }
}

function fmtFigure(name, est) {
  if (!est || est.mean === null || est.mean === undefined) return dash;
  const v = est.mean;
  const ci = est.ci95 || [];
  const half = typeof ci[0] === "number" && typeof ci[1] === "number" ? (ci[1] - ci[0]) / 2 : null;
  let s;
  const ratio = /level|rate|occupancy|utili[sz]ation|share|fraction|^prob/.test(name);
  if (ratio) s = pct(v);
  else if (/seconds|asa|wait|aht|time/.test(name)) s = `${v.toFixed(1)} s`;
  else s = Number.isInteger(v) ? String(v) : v.toFixed(1);
  if (typeof half === "number" && half > 0) s += ratio ? ` ±${(half * 100).toFixed(1)}` : ` ±${half.toFixed(1)}`;
  return s;
}

function renderWhatIf() {
  const box = $("#whatif");
  const w = S.whatIf;
  if (!w) { box.replaceChildren(h("p", { class: "muted", text: t("no_prediction") })); return; }
  const r = w.report;
  const rows = r.side_by_side.map((row) => {
    const d = row.difference && row.difference.mean;
    return h("tr", { dataset: { figure: row.figure } },
      h("th", { scope: "row", text: t("f_" + row.figure) === "f_" + row.figure ? row.figure : t("f_" + row.figure) }),
      h("td", { class: "cur", "data-label": t("current"), text: fmtFigure(row.figure, row.current) }),
      h("td", { class: "prop", "data-label": t("proposed"), text: fmtFigure(row.figure, row.proposed) }),
      h("td", { class: `diff ${d > 0 ? "up" : d < 0 ? "down" : ""}`, "data-label": t("difference"), text: fmtFigure(row.figure, row.difference) }));
  });
  box.replaceChildren(
    h("p", { class: "muted", text: t("whatif_about", { v: r.current_version, n: r.replications, seed: r.seed, w: t("wl_" + r.workload) }) }),
    h("div", { class: "table-wrap" }, h("table", { id: "whatif-table", class: "compare" },
      h("thead", {}, h("tr", {}, h("th", { text: t("figure") }), h("th", { text: t("current") }), h("th", { text: t("proposed") }), h("th", { text: t("difference") }))),
      h("tbody", {}, ...rows))),
    ...(r.notes || []).map((n) => h("p", { class: "note", text: n })),
    h("p", { class: "muted", text: t("whatif_changes", { c: JSON.stringify(w.changes) }) }));
}

function renderRouting() {
  const r = S.routing;
  if (!r) return;
  $("#routing-current").replaceChildren(
    h("span", { id: "routing-version", dataset: { version: r.version }, text: t("current_version", { v: r.version }) }), " ",
    h("span", { class: "muted", text: t(r.user ? "applied_by" : "applied_from_file", { u: r.user, at: time(r.at) }) }),
    r.comment ? h("q", { class: "comment", text: r.comment }) : null);
  $("#r-apply").textContent = t("apply_as", { v: r.version + 1 });
  const body = $("#versions tbody");
  body.replaceChildren(...[...S.versions].reverse().map((v) => h("tr", { dataset: { version: v.version, current: v.current } },
    h("td", { "data-label": t("col_version") }, h("b", { text: String(v.version) }), v.current ? h("span", { class: "badge current", text: t("current") }) : null),
    h("td", { "data-label": t("col_when"), text: time(v.at) }),
    h("td", { "data-label": t("col_who"), text: v.user || t("the_file") }),
    h("td", { "data-label": t("col_source"), text: t("src_" + v.source) + (v.rolled_back_to ? ` → ${v.rolled_back_to}` : "") }),
    h("td", { "data-label": t("col_comment"), text: v.comment || dash }),
    h("td", { "data-label": t("col_actions") }, v.current ? dash : h("button", { type: "button", class: "do-rollback", text: t("rollback_to", { v: v.version }), onclick: () => rollback(v.version) })))));
  renderWhatIf();
}

function renderAll() {
  if (!S.me) { showSignIn($("#signin-error").hidden ? "" : $("#signin-error").textContent); return; }
  $("#me").textContent = `${S.me.user} (${t("role_" + S.me.role)})`;
  $("#live").textContent = t("live_" + ($("#live").dataset.state || "closed"));
  renderWallboard();
  renderCharts();
  renderAgents();
  fillRoutingFormLabels();
  renderRouting();
}

function fillRoutingFormLabels() {
  for (const lab of document.querySelectorAll("#r-weights label.weight")) {
    const k = lab.querySelector("input").dataset.weight;
    lab.querySelector("span").textContent = t("w_" + k) === "w_" + k ? k : t("w_" + k);
  }
  const legend = document.querySelector("#r-weights legend");
  if (legend) legend.textContent = t("weights");
}

boot();
