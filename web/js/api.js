// The HTTP API: where it is (config.json, written at deploy; empty means this origin), the session
// (access token, and a refresh token when the server issues them), and one request function that turns
// every failure into an ApiError carrying the API's own code and message.
import { t } from "./i18n.js";

const SESSION_KEY = "photopipe.session";
let config = { api_url: "", websocket_url: "", wechat_sandbox: false };
let info = null;
let session = readSession();
let refreshing = null;
const sessionListeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export async function loadConfig() {
  try {
    const response = await fetch("config.json", { cache: "no-cache" });
    if (response.ok) config = { ...config, ...(await response.json()) };
  } catch {
    // No config.json (a plain static server): the API is on this origin.
  }
  try {
    info = await request("GET", "/info", { auth: false });
  } catch {
    info = null;
  }
  return config;
}

export function getConfig() {
  return config;
}

export function getInfo() {
  return info;
}

export function apiBase() {
  return `${(config.api_url || "").replace(/\/+$/, "")}/api/v1`;
}

/** Where the live updates are: config.json, else what GET /info announces; null when neither says. */
export function websocketUrl() {
  const configured = config.websocket_url || (info && info.websocket_url);
  if (!configured) return null;
  return new URL(configured, window.location.href).href.replace(/^http/, "ws");
}

// ------------------------------------------------------------------ session
function readSession() {
  try {
    const stored = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
    return stored && stored.token ? stored : null;
  } catch {
    return null;
  }
}

export function getSession() {
  return session;
}

export function onSession(fn) {
  sessionListeners.add(fn);
  return () => sessionListeners.delete(fn);
}

function setSession(value) {
  session = value;
  if (value) localStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else localStorage.removeItem(SESSION_KEY);
  sessionListeners.forEach((fn) => fn(value));
}

/** Keep what login/register/refresh answered: the refresh token only when the server issues one. */
export function startSession(answer, previous = null) {
  setSession({
    token: answer.token,
    refresh_token: answer.refresh_token || null,
    expires_at: Date.now() + (answer.expires_in || 3600) * 1000,
    user: answer.user || (previous && previous.user) || null,
  });
}

export function updateUser(user) {
  if (session) setSession({ ...session, user });
}

export async function signOut({ ended = false } = {}) {
  const current = session;
  setSession(null);
  if (current && current.refresh_token && !ended) {
    try {
      await request("POST", "/auth/logout", { auth: false, body: { refresh_token: current.refresh_token } });
    } catch {
      // Signed out in this tab either way (the tokens are gone from storage); the refresh token then
      // lapses on its own (refresh_expires_in).
    }
  }
}

/**
 * A new access token from the refresh token, one renewal at a time (callers that arrive meanwhile share
 * it). Refresh tokens rotate and a spent one presented again ends the session everywhere, so another tab's
 * renewal (same localStorage) is adopted instead of spending ours a second time. Answers true when there is
 * a fresh token, false when the session is over; a network failure throws (the session stays).
 */
export async function refreshSession() {
  if (!session || !session.refresh_token) return false;
  if (!refreshing) {
    const spent = session;
    refreshing = (async () => {
      try {
        const stored = readSession();
        if (stored && stored.refresh_token && stored.refresh_token !== spent.refresh_token) {
          setSession(stored); // another tab renewed it already
          return true;
        }
        const answer = await request("POST", "/auth/refresh", {
          auth: false,
          body: { refresh_token: spent.refresh_token },
        });
        startSession(answer, spent);
        return true;
      } catch (error) {
        if (error instanceof ApiError && error.status === 0) throw error;
        return false; // refused (revoked, expired, reused): the caller ends the session
      } finally {
        refreshing = null;
      }
    })();
  }
  return refreshing;
}

/** When an access token expires (ms): its JWT `exp` claim, else what the login answer said. */
function expiresAt(current) {
  try {
    const part = current.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(part)).exp;
    if (typeof exp === "number") return exp * 1000;
  } catch {
    // not a JWT we can read: fall back to expires_in
  }
  return current.expires_at || 0;
}

/** The access token, renewed first when it is about to expire (and a refresh token exists). */
export async function freshToken() {
  if (session && session.refresh_token && expiresAt(session) - Date.now() < 60_000) {
    try {
      await refreshSession();
    } catch {
      // offline: send the old token; the request itself reports the network failure
    }
  }
  return session ? session.token : null;
}

// Another tab signed in, renewed or signed out: follow it, so no tab spends a rotated refresh token.
window.addEventListener("storage", (event) => {
  if (event.key !== SESSION_KEY) return;
  session = readSession();
  sessionListeners.forEach((fn) => fn(session));
});

// ------------------------------------------------------------------ requests
async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && body.error;
  if (error && error.message) return new ApiError(response.status, error.code || "error", error.message, body);
  const message = (body && body.message) || `${response.status} ${response.statusText}`;
  return new ApiError(response.status, `http_${response.status}`, message, body);
}

async function errorCode(response) {
  try {
    const body = await response.clone().json();
    return (body && body.error && body.error.code) || null;
  } catch {
    return null;
  }
}

/**
 * One API call. `body` is sent as JSON unless it is a Blob/FormData (`raw`). A 401 `token_expired` renews
 * the access token once (one renewal at a time, shared by concurrent calls) and retries; any other 401, or
 * one after the renewal, ends the session. Answers the parsed JSON (null for 204), or the Response itself
 * with `response: true`.
 */
export async function request(
  method,
  path,
  { body, auth = true, headers = {}, response: wantResponse, outsideApi = false } = {},
) {
  const url = outsideApi ? path : `${apiBase()}${path}`;
  let sentToken = null;
  const send = async () => {
    const h = { ...headers };
    let payload;
    if (body instanceof Blob || body instanceof FormData) payload = body;
    else if (body !== undefined) {
      h["content-type"] = "application/json";
      payload = JSON.stringify(body);
    }
    if (auth) {
      sentToken = await freshToken();
      if (sentToken) h.authorization = `Bearer ${sentToken}`;
    }
    try {
      return await fetch(url, { method, headers: h, body: payload });
    } catch {
      throw new ApiError(0, "network_error", t("network_error"));
    }
  };
  let res = await send();
  if (res.status === 401 && auth && session) {
    if ((await errorCode(res)) === "token_expired") {
      // Renewed meanwhile by a concurrent call: just retry with the new token.
      const renewed = session && session.token !== sentToken ? true : await refreshSession();
      if (renewed) res = await send();
    }
    if (res.status === 401) {
      const error = await errorFrom(res);
      await signOut({ ended: true });
      throw error;
    }
  }
  if (!res.ok && !(wantResponse && res.status < 400)) throw await errorFrom(res);
  if (wantResponse) return res;
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

export const api = {
  get: (path, options) => request("GET", path, options),
  post: (path, body, options = {}) => request("POST", path, { ...options, body }),
  del: (path, options) => request("DELETE", path, options),
};

/** The sandbox's "pay this order" (local stack only: config.json says wechat_sandbox). */
export function sandboxPay(orderId) {
  const base = (config.api_url || "").replace(/\/+$/, "");
  return request("POST", `${base}/sandbox/wechatpay/orders/${encodeURIComponent(orderId)}/pay`, {
    auth: false,
    outsideApi: true,
  });
}
