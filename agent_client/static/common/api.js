// api.js: the staff API from a page (the agent desktop, the supervisor console).
//
//   import { api, ApiError, signIn, whoAmI, signOut } from "/common/api.js";
//   const me = await whoAmI();                 // null when not signed in
//   await signIn(user, password);              // the session cookie + the CSRF token
//   const info = await api("/api/agents/alice");
//   await api("/api/agents/alice/pause", { method: "POST", body: { reason: "lunch" } });
//
// Sign-in is the session cookie (HttpOnly, set by POST /api/session); every state change
// (POST, PUT, PATCH, DELETE) carries the session's token in X-CSRF-Token. Every failure is
// thrown as one ApiError {status, code, message, details}, from the API's one error shape
// ({"error": {status, code, message, details?}}) or made up for a network failure (status 0,
// code "network"). A 204 answers null. Stable: other pages import this module.

let csrf = null;

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details || null;
  }
}

/** The CSRF token to send (set by signIn and whoAmI). */
export function setCsrf(token) { csrf = token || null; }

/** Call the API: `path` with an optional `query` object, a JSON `body`; returns the JSON. */
export async function api(path, { method = "GET", body, query } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === "") continue;
      for (const one of Array.isArray(v) ? v : [v]) q.append(k, String(one));
    }
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
  let resp;
  try {
    resp = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "network", String(err && err.message ? err.message : err));
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(resp.status, e.code || "http_" + resp.status, e.message || resp.statusText, e.details);
  }
  return data;
}

/** Sign in with a staff member's name and password: {user, role, csrf_token, expires_at}. */
export async function signIn(user, password) {
  const info = await api("/api/session", { method: "POST", body: { user, password } });
  setCsrf(info.csrf_token);
  return info;
}

/** Who is signed in ({user, role, via}), or null. */
export async function whoAmI() {
  try {
    const me = await api("/api/session");
    setCsrf(me.csrf_token);
    return me;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null;
    throw err;
  }
}

/** Sign out (the cookie is cleared). */
export async function signOut() {
  try { await api("/api/session", { method: "DELETE" }); } finally { setCsrf(null); }
}
