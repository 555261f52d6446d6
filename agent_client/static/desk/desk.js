// The agent desktop. Everything it shows comes from the engine: the agent's state, the call in
// hand and the tasks from the API (/api/agents/{me}...), refreshed on each event of the live
// stream (/api/events: agent_state, offer, case...); the page never guesses a state. The
// browser phone (phone.js) carries the audio unless the agent uses a desk phone (companion mode).
import { api, ApiError, signIn, whoAmI, signOut } from "/common/api.js";
import { EventStream } from "/common/stream.js";
import { I18n } from "/common/i18n.js";
import { STRINGS } from "./strings.js";
import { BrowserPhone } from "./phone.js";

const $ = (id) => document.getElementById(id);
const i18n = new I18n(STRINGS, "desk");
const t = (k, v) => i18n.t(k, v);

const S = (window.deskState = {
  me: null, role: null, agent: null, offer: null, call: null, task: null, tasks: [],
  caseId: null, caseData: null, caller: null, waitFrom: null, ivrPath: {}, directory: null,
  companion: false, wrapDeadline: null, error: "", streamOpen: false,
});
const phone = new BrowserPhone($("remote"), () => render());
window.hotlineStats = phone.stats;
let stream = null;
let ticker = null;
let todayTimer = null;
let formDirty = false;

// -- helpers ------------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? t("seconds", { n: s }) : t("minutes", { m: Math.floor(s / 60), s: s % 60 });
}

function when(iso) {
  return new Date(iso).toLocaleString(i18n.lang === "zh" ? "zh-CN" : "en-GB", { dateStyle: "short", timeStyle: "short" });
}

function showError(err) {
  if (!err) { S.error = ""; $("error").textContent = ""; return; }
  const code = err instanceof ApiError ? err.code : "";
  const known = code && STRINGS.en["err." + code];
  S.error = code || String(err);
  $("error").textContent = known ? t("err." + code) : (err.message || String(err));
}

async function act(fn) {
  showError(null);
  try { return await fn(); } catch (err) { showError(err); return null; } finally { render(); }
}

const mine = (path) => `/api/agents/${encodeURIComponent(S.me)}${path}`;

// -- reading the engine ---------------------------------------------------------------------------

async function refreshAgent() {
  try {
    S.agent = await api(mine(""));
  } catch (err) { showError(err); return render(); }
  const a = S.agent;
  S.wrapDeadline = a.wrap_up_remaining === null ? null : performance.now() + a.wrap_up_remaining * 1000;
  if (a.call && a.state === "on_call") {
    try { S.call = await api(mine("/call")); } catch { S.call = null; }
  } else {
    S.call = null;
  }
  if (S.call) setCase(S.call.case_id, S.call.caller);
  else if (a.call && a.call.case_id) setCase(a.call.case_id, a.call.caller);
  if (a.state === "on_call" && !S.call) await refreshTasks();
  render();
}

async function refreshTasks() {
  try { S.tasks = await api(mine("/tasks")); } catch { S.tasks = []; }
  S.task = S.tasks.find((x) => x.state === "delivering" && x.agent === S.me && !x.finished_at) || null;
  if (S.task) setCase(S.task.case_id, S.task.caller);
  renderTasks();
  render();
}

async function refreshToday() {
  if (!S.me) return;
  try {
    const d = await api(mine("/today"));
    const dl = $("today-figures");
    dl.replaceChildren();
    const secs = new Set(["talk_seconds", "wrap_up_seconds", "paused_seconds", "ready_seconds"]);
    for (const k of ["offers", "answered", "work_answered", "missed", "talk_seconds", "wrap_up_seconds", "ready_seconds", "paused_seconds", "occupancy"]) {
      if (!(k in d)) continue;
      let v = d[k];
      if (secs.has(k)) v = duration(v);
      else if (k === "occupancy") v = v === null ? "-" : Math.round(v * 100) + " %";
      dl.append(el("dt", {}, t("today." + k)), el("dd", { dataset: { key: k } }, String(v)));
    }
  } catch { /* shown again next time */ }
}

async function loadDirectory() {
  try { S.directory = await api("/api/directory"); } catch (err) { showError(err); return; }
  const sel = $("reason");
  const current = sel.value;
  sel.replaceChildren(...S.directory.pause_reasons.map((r) => el("option", { value: r }, r)));
  if (current) sel.value = current;
  renderDirectory();
}

function setCase(caseId, caller) {
  if (!caseId || caseId === S.caseId) return;
  S.caseId = caseId;
  S.caller = caller;
  S.caseData = null;
  S.waitFrom = null;
  formDirty = false;
  loadCase();
  loadHistory(caller, caseId);
}

async function loadCase() {
  if (!S.caseId) return;
  const id = S.caseId;
  let c;
  try { c = await api(`/api/cases/${id}`); } catch (err) { showError(err); return; }
  if (id !== S.caseId) return;
  S.caseData = c;
  const queued = c.events.find((e) => e.kind === "queued") || c.events.find((e) => e.kind === "entered");
  if (queued) S.waitFrom = Date.parse(queued.at);
  if (!formDirty) {
    $("case-type").value = c.type;
    $("case-status").value = c.status;
    $("case-disposition").value = c.disposition || "";
  }
  $("case-notes").replaceChildren(...c.notes.map((n) => el("li", {}, el("span", { class: "small" }, `${when(n.at)} ${n.author}: `), n.text)));
  render();
}

async function loadHistory(caller, current) {
  const list = $("history-list");
  list.replaceChildren();
  if (!caller) return;
  let page;
  try { page = await api("/api/cases", { query: { caller, limit: 10 } }); } catch { return; }
  const earlier = page.items.filter((c) => c.id !== current);
  $("history-empty").hidden = earlier.length > 0;
  for (const [i, c] of earlier.entries()) {
    const trail = el("ol", {});
    const details = el("details", i < 2 ? { open: "" } : {},
      el("summary", {}, `#${c.id} · ${when(c.created_at)} · ${c.type} · ${c.status}${c.disposition ? " · " + c.disposition : ""}${c.owner ? " · " + c.owner : ""}`),
      trail);
    list.append(el("li", { dataset: { caseId: String(c.id) } }, details));
    api(`/api/cases/${c.id}`).then((d) => {
      trail.replaceChildren(...d.events.map((e) => el("li", {}, `${when(e.at)} ${e.kind}${e.actor ? " (" + e.actor + ")" : ""}${e.kind === "note" && e.data.text ? ": " + e.data.text : ""}${e.kind === "disposition_set" && e.data.disposition ? ": " + e.data.disposition : ""}`)));
    }).catch(() => {});
  }
  render();
}

// -- the live stream ---------------------------------------------------------------------------

function onEvent(msg) {
  const d = msg.data || {};
  switch (msg.kind) {
    case "agent_state":
      if (d.agent === S.me) refreshAgent().then(refreshToday);
      break;
    case "offer":
      if (d.agent !== S.me) break;
      if (d.state === "ringing") {
        S.offer = d;
        S.ivrPath[d.call_id] = { ivr: d.ivr || [], vars: d.vars || {} };
        setCase(d.case_id, d.caller);
        refreshTasks();
      } else if (S.offer && S.offer.call_id === d.call_id) {
        S.offer = null;
      }
      refreshAgent();
      break;
    case "call_answered": case "call_ended": case "call_offered": case "offer_cancelled":
      if (d.agent === S.me) refreshAgent();
      break;
    case "case":
      if (d.case_id === S.caseId) loadCase();
      break;
  }
  render();
}

function onReset(data) {
  const st = data.state || {};
  S.offer = (st.offers || []).find((o) => o.agent === S.me && o.state === "ringing") || null;
  if (S.offer) {
    S.ivrPath[S.offer.call_id] = { ivr: S.offer.ivr || [], vars: S.offer.vars || {} };
    setCase(S.offer.case_id, S.offer.caller);
  }
  refreshAgent();
  refreshTasks();
}

// -- rendering -----------------------------------------------------------------------------------

function ivrItems(info) {
  const out = [];
  if (!info) return out;
  const vars = info.vars || {};
  for (const [k, v] of Object.entries(vars)) {
    if (k.startsWith("skill.") || k.startsWith("callback") || k === "case_id") continue;
    const label = STRINGS.en["ivr." + k] ? t("ivr." + k) : k;
    out.push(el("li", { dataset: { var: k } }, `${label}: ${v}`));
  }
  for (const step of info.ivr || []) {
    if (step.var && vars[step.var] !== undefined) continue; // shown above as the variable
    out.push(el("li", { dataset: { node: step.node } }, `${step.node}: ${step.digits || ""}${step.to ? " → " + step.to : ""}`));
  }
  return out;
}

function render() {
  const a = S.agent;
  const state = a ? a.state : "logged_out";
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = S.me ? t("state." + state) + (a && a.reason ? ` (${a.reason})` : "") : "";
  $("who").textContent = S.me ? (a ? `${a.name} (${S.me})` : S.me) : "";
  $("link").dataset.link = S.streamOpen ? "open" : "closed";
  $("signout").hidden = !S.me;
  if (!S.me) return;

  // presence
  $("ready").disabled = !a || (a.status === "available" && state !== "paused");
  $("pause").disabled = !a || (state === "paused" && a.status === "paused");
  $("logout").disabled = !a || state === "logged_out";
  $("wrapup").hidden = state !== "wrap_up";
  const ps = S.companion ? "companion" : phone.stats.state;
  $("phone-state").textContent = t("phone." + ps) || ps;
  $("phone-form").hidden = S.companion || phone.ws !== null;

  // ringing
  const ringing = S.offer !== null || phone.ringing;
  $("offer").hidden = !ringing;
  if (ringing) {
    const o = S.offer || {};
    $("offer-caller").textContent = o.caller || phone.stats.caller || "?";
    $("offer-queue").textContent = o.queue || "";
    $("offer-ivr").replaceChildren(...ivrItems(S.ivrPath[o.call_id]));
    $("answer").hidden = S.companion;
    $("decline").hidden = S.companion;
    $("answer").disabled = !phone.ringing;
    $("decline").disabled = !phone.ringing;
    $("offer-phone-note").hidden = !S.companion;
  }

  // the call in hand
  const c = S.call;
  // a call outside the queues (a colleague's transfer to me) is the browser phone's alone
  const direct = !c && !S.task && phone.stats.state === "connected";
  $("call").hidden = !c && !direct;
  for (const id of ["hold", "mute", "transfer"]) $(id).hidden = !c;
  if (direct) {
    $("call-caller").textContent = phone.stats.caller || "?";
    $("call-queue").textContent = "-";
    $("call-ivr").replaceChildren();
    $("call-flags").textContent = "";
    $("consult").hidden = true;
  }
  if (c) {
    $("call-caller").textContent = c.caller;
    $("call-queue").textContent = c.queue;
    const path = S.ivrPath[c.call_id] || { ivr: [], vars: c.ivr };
    $("call-ivr").replaceChildren(...ivrItems({ ivr: path.ivr, vars: { ...c.ivr, ...path.vars } }));
    $("hold").setAttribute("aria-pressed", String(c.held));
    $("hold").firstElementChild.textContent = t(c.held ? "resume" : "hold");
    $("mute").setAttribute("aria-pressed", String(c.muted));
    $("mute").firstElementChild.textContent = t(c.muted ? "unmute" : "mute");
    $("call-flags").textContent = [c.held ? t("held") : "", c.muted ? t("muted") : ""].filter(Boolean).join(" · ");
    const tr = c.transfer;
    $("consult").hidden = !tr;
    if (tr) {
      $("consult-to").textContent = tr.to;
      $("consult-state").textContent = tr.state;
      $("consult-complete").disabled = tr.state !== "talking";
    }
  }
  // a message or callback request in hand
  const task = S.task && state === "on_call" && !c ? S.task : null;
  $("task").hidden = !task;
  if (task) {
    $("task-kind").textContent = t("kind." + task.kind);
    $("task-caller").textContent = task.callback_to || task.caller;
    $("task-queue").textContent = task.queue;
    const audio = $("task-audio");
    audio.hidden = !task.audio_url;
    if (task.audio_url && audio.dataset.src !== task.audio_url) { audio.dataset.src = task.audio_url; audio.src = task.audio_url; }
    $("task-callback").disabled = S.companion || !phone.ws;
  }

  // the case
  $("case").hidden = !S.caseId;
  $("history").hidden = !S.caseId;
  $("case-id").textContent = S.caseId ? `#${S.caseId}` : "";
  $("case-finish").hidden = state !== "wrap_up";
  tick();
}

function tick() {
  if (S.wrapDeadline !== null) {
    $("wrapup-left").textContent = String(Math.max(0, Math.ceil((S.wrapDeadline - performance.now()) / 1000)));
  }
  if (S.call) $("call-time").textContent = duration((Date.now() - Date.parse(S.call.since)) / 1000);
  else if (phone.stats.state === "connected" && phone.since) $("call-time").textContent = duration((Date.now() - phone.since) / 1000);
  if (S.offer || phone.ringing) {
    $("offer-wait").textContent = S.waitFrom ? duration((Date.now() - S.waitFrom) / 1000) : "…";
  }
}

function renderDirectory() {
  const list = $("directory");
  if (!S.directory) return;
  const q = $("transfer-search").value.trim().toLowerCase();
  const match = (...xs) => !q || xs.some((x) => String(x || "").toLowerCase().includes(q));
  const items = [];
  for (const ag of S.directory.agents) {
    if (ag.agent_id === S.me || !match(ag.agent_id, ag.name, ag.extension)) continue;
    items.push(el("li", { dataset: { agent: ag.agent_id } },
      el("span", {}, `${ag.name} (${ag.extension || ag.agent_id}) `,
        el("span", { class: ag.free ? "free" : "busy" }, ag.free ? t("free") : t("state." + ag.state))),
      el("button", { type: "button", onclick: () => transfer(ag.agent_id) }, t("transfer_to"))));
  }
  for (const queue of S.directory.queues) {
    if (!match(queue)) continue;
    items.push(el("li", { dataset: { queue } }, el("span", {}, `${t("queue_entry")}: ${queue}`),
      el("button", { type: "button", onclick: () => transfer(queue) }, t("transfer_to"))));
  }
  list.replaceChildren(...items);
}

function renderTasks() {
  const list = $("tasks-list");
  $("tasks-empty").hidden = S.tasks.length > 0;
  list.replaceChildren(...S.tasks.slice().reverse().map((x) => el("li", { dataset: { task: x.id } },
    el("div", {}, el("b", {}, t("kind." + x.kind)), ` ${x.callback_to || x.caller} · ${x.queue} · ${when(x.arrived_at)} · ${t("task." + x.state)}`),
    x.audio_url ? el("audio", { controls: "", preload: "none", src: x.audio_url }) : null)));
}

// -- actions ----------------------------------------------------------------------------------

async function transfer(to) {
  const mode = document.querySelector("input[name=mode]:checked").value;
  await act(async () => {
    await api(mine("/call/transfer"), { method: "POST", body: { to, mode } });
    await refreshAgent();
  });
}

async function saveCase({ finish = false } = {}) {
  if (!S.caseId || !S.caseData) return;
  await act(async () => {
    const c = S.caseData;
    const change = {};
    const type = $("case-type").value, status = finish ? "resolved" : $("case-status").value;
    const disposition = $("case-disposition").value.trim();
    if (type !== c.type) change.type = type;
    if (status !== c.status) change.status = status;
    if (disposition !== (c.disposition || "")) change.disposition = disposition;
    const note = $("case-note").value.trim();
    if (note) {
      await api(`/api/cases/${S.caseId}/notes`, { method: "POST", body: { text: note } });
      $("case-note").value = "";
    }
    if (Object.keys(change).length) await api(`/api/cases/${S.caseId}`, { method: "PATCH", body: change });
    formDirty = false;
    await loadCase();
    $("case-saved").textContent = t("saved");
    setTimeout(() => { $("case-saved").textContent = ""; }, 3000);
    if (finish && S.agent && S.agent.state === "wrap_up") S.agent = await api(mine("/wrap-up/end"), { method: "POST" });
  });
}

function key(digit) {
  if (S.call) act(() => api(mine("/call/keys"), { method: "POST", body: { digits: digit } }));
  else if (phone.ws) phone.dtmf(digit);
}

const actions = {
  ready: () => act(async () => { S.agent = await api(mine("/ready"), { method: "POST" }); await refreshAgent(); }),
  pause: () => act(async () => { S.agent = await api(mine("/pause"), { method: "POST", body: { reason: $("reason").value } }); await refreshAgent(); }),
  logout: () => act(async () => { S.agent = await api(mine("/logout"), { method: "POST" }); await refreshAgent(); }),
  wrapEnd: () => act(async () => { S.agent = await api(mine("/wrap-up/end"), { method: "POST" }); await refreshAgent(); }),
  wrapExtend: () => act(async () => { S.agent = await api(mine("/wrap-up/extend"), { method: "POST", body: { seconds: 30 } }); await refreshAgent(); }),
  answer: () => { if (phone.ringing) phone.accept(); },
  decline: () => { if (phone.ringing) phone.decline(); },
  hold: () => S.call && act(async () => { S.call = await api(mine(S.call.held ? "/call/resume" : "/call/hold"), { method: "POST" }); }),
  mute: () => S.call && act(async () => { S.call = await api(mine("/call/mute"), { method: "POST", body: { muted: !S.call.muted } }); }),
  hangup: () => {
    if (S.call) act(async () => { await api(mine("/call/hangup"), { method: "POST" }); await refreshAgent(); });
    else if (phone.ws) phone.hangup();
  },
  callback: () => { if (S.task && phone.ws) phone.dtmf("1"); },
};

// -- sign-in and start -----------------------------------------------------------------------------

async function enter(me, password) {
  S.me = me.user;
  S.role = me.role;
  S.companion = sessionStorage.getItem("hotline-desk-companion") === "1";
  $("signin").hidden = true;
  $("desk").hidden = false;
  if (!S.companion && password) {
    const ok = await phone.login(S.me, password);
    if (!ok) showError(new Error(t("phone.failed")));
  }
  stream = new EventStream({
    onEvent, onReset,
    onStatus: (st) => { S.streamOpen = st === "open"; render(); },
  });
  stream.start();
  await Promise.all([loadDirectory(), refreshAgent(), refreshTasks(), refreshToday()]);
  ticker = setInterval(tick, 500);
  todayTimer = setInterval(refreshToday, 30000);
  render();
  $("ready").focus();
}

async function leave() {
  if (stream) stream.stop();
  phone.logout();
  clearInterval(ticker);
  clearInterval(todayTimer);
  try { await signOut(); } catch { /* signed out anyway */ }
  location.reload();
}

function wire() {
  i18n.apply();
  $("lang").value = i18n.lang;
  $("lang").addEventListener("change", (e) => i18n.set(e.target.value));
  i18n.onChange(() => { render(); renderDirectory(); renderTasks(); refreshToday(); });
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("signin-error").textContent = "";
    const user = $("user").value.trim(), password = $("password").value;
    try {
      const me = await signIn(user, password);
      sessionStorage.setItem("hotline-desk-companion", $("companion").checked ? "1" : "0");
      $("password").value = "";
      await enter(me, password);
    } catch (err) {
      const code = err instanceof ApiError ? err.code : "";
      $("signin-error").textContent = STRINGS.en["err." + code] ? t("err." + code) : String(err.message || err);
    }
  });
  $("phone-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const pw = $("phone-password").value;
    $("phone-password").value = "";
    const ok = await phone.login(S.me, pw);
    if (!ok) showError(new Error(t("phone.failed")));
    render();
  });
  $("signout").addEventListener("click", leave);
  $("ready").addEventListener("click", actions.ready);
  $("pause").addEventListener("click", actions.pause);
  $("logout").addEventListener("click", actions.logout);
  $("wrapup-end").addEventListener("click", actions.wrapEnd);
  $("wrapup-extend").addEventListener("click", actions.wrapExtend);
  $("answer").addEventListener("click", actions.answer);
  $("decline").addEventListener("click", actions.decline);
  $("hold").addEventListener("click", actions.hold);
  $("mute").addEventListener("click", actions.mute);
  $("hangup").addEventListener("click", actions.hangup);
  $("consult-complete").addEventListener("click", () => act(async () => { await api(mine("/call/transfer/complete"), { method: "POST" }); await refreshAgent(); }));
  $("consult-cancel").addEventListener("click", () => act(async () => { S.call = await api(mine("/call/transfer/cancel"), { method: "POST" }); }));
  $("task-callback").addEventListener("click", actions.callback);
  $("task-done").addEventListener("click", () => { if (phone.ws) phone.hangup(); });
  $("transfer").addEventListener("toggle", () => { if ($("transfer").open) { loadDirectory(); $("transfer-search").focus(); } });
  $("transfer-search").addEventListener("input", renderDirectory);
  for (const id of ["case-type", "case-status", "case-disposition"]) $(id).addEventListener("input", () => { formDirty = true; });
  $("case-form").addEventListener("submit", (ev) => { ev.preventDefault(); saveCase(); });
  $("case-finish").addEventListener("click", () => saveCase({ finish: true }));
  const pad = $("keypad");
  for (const d of "123456789*0#") pad.append(el("button", { type: "button", dataset: { key: d }, onclick: () => key(d) }, d));
  document.addEventListener("keydown", (e) => {
    if (!S.me) return;
    const typing = e.target instanceof HTMLElement && e.target.matches("input, textarea, select");
    if (e.altKey && !e.ctrlKey && !e.metaKey) {
      const k = e.key.toLowerCase();
      const map = {
        r: actions.ready, p: actions.pause, a: actions.answer, d: actions.decline, h: actions.hold,
        m: actions.mute, x: actions.hangup, e: actions.wrapEnd, c: actions.callback,
        s: () => saveCase(), n: () => $("case-note").focus(),
        t: () => { $("transfer").open = true; $("transfer-search").focus(); },
      };
      if (map[k]) { e.preventDefault(); map[k](); }
      return;
    }
    if (!typing && !e.ctrlKey && !e.metaKey && /^[0-9*#]$/.test(e.key) && (S.call || S.task)) key(e.key);
  });
}

wire();
whoAmI().then((me) => (me ? enter(me, null) : $("user").focus())).catch(() => $("user").focus());
