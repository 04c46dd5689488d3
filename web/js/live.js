// Live updates over the WebSocket API: `{type: "image.updated" | "job.updated" | ..., ..., state, at}`.
// One connection per signed-in tab, with the access token in the query string. A dropped connection is
// reopened with exponential backoff (1 s doubling to 30 s, with jitter) and a fresh token; after a reopen,
// listeners get `{type: "live.reconnected"}` to catch up once on what they may have missed. A
// `{"action": "ping"}` every 5 minutes keeps API Gateway's 10-minute idle timeout away. Never polls.
import { freshToken, websocketUrl } from "./api.js";

const PING_MS = 5 * 60 * 1000;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;

const listeners = new Set();
const statusListeners = new Set();
let socket = null;
let wanted = false;
let retryMs = FIRST_RETRY_MS;
let retryTimer = null;
let pingTimer = null;
let opened = 0;
let status = { state: "off" };

function setStatus(value) {
  status = value;
  statusListeners.forEach((fn) => fn(value));
}

export function liveStatus() {
  return status;
}

export function onLiveStatus(fn) {
  statusListeners.add(fn);
  return () => statusListeners.delete(fn);
}

/** Subscribe to every message; returns the unsubscribe function. */
export function onLive(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(message) {
  listeners.forEach((fn) => {
    try {
      fn(message);
    } catch (e) {
      console.warn("live update listener failed", e);
    }
  });
}

async function connect() {
  const url = websocketUrl();
  if (!url) {
    setStatus({ state: "unavailable" });
    return;
  }
  const token = await freshToken();
  if (!wanted || !token) return;
  setStatus({ state: opened ? "retrying" : "connecting", inSeconds: 0 });
  const separator = url.includes("?") ? "&" : "?";
  const ws = new WebSocket(`${url}${separator}token=${encodeURIComponent(token)}`);
  socket = ws;
  ws.addEventListener("open", () => {
    if (socket !== ws) return;
    retryMs = FIRST_RETRY_MS;
    opened += 1;
    setStatus({ state: "live" });
    if (opened > 1) emit({ type: "live.reconnected" });
    clearInterval(pingTimer);
    pingTimer = setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ action: "ping" }));
    }, PING_MS);
  });
  ws.addEventListener("message", (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return; // not ours
    }
    if (message && typeof message.type === "string") emit(message);
  });
  ws.addEventListener("close", () => {
    if (socket !== ws) return;
    socket = null;
    clearInterval(pingTimer);
    if (!wanted) return;
    if (!opened) opened = 1; // from now on a successful open is a reconnect: catch up after it
    const delay = Math.min(MAX_RETRY_MS, retryMs) * (0.8 + Math.random() * 0.4);
    retryMs = Math.min(MAX_RETRY_MS, retryMs * 2);
    setStatus({ state: "retrying", inSeconds: Math.round(delay / 1000) });
    retryTimer = setTimeout(connect, delay);
  });
}

export function startLive() {
  if (wanted) return;
  wanted = true;
  opened = 0;
  retryMs = FIRST_RETRY_MS;
  connect();
}

export function stopLive() {
  wanted = false;
  clearTimeout(retryTimer);
  clearInterval(pingTimer);
  if (socket) {
    const ws = socket;
    socket = null;
    ws.close(1000, "signed out");
  }
  setStatus({ state: "off" });
}
