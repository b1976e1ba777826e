// CallCue client: one /ws/agent connection for an agent desktop or a supervisor console, in
// a browser or in node. An ES module with no build step and no required dependency:
//
//   import { CallCueClient } from "callcue-client";
//   const cc = new CallCueClient({ url: "wss://callcue.example/ws/agent", token });
//   cc.on("hint", (h) => show(h));
//   await cc.connect();
//   await cc.subscribe("*", { history: true });
//
// Why it is more than a WebSocket: a desk must not lose or repeat what it was shown when its
// network blinks, the server restarts or the call moves to another node. The server numbers
// each call's events (`seq`) and stores them before sending; this client remembers the last
// number it saw per call and, on every reconnect, subscribes again with those cursors, so the
// server replays exactly what came after. Numbered events at or below a cursor are dropped,
// so nothing is handled twice. Partials are unnumbered: each is replaced within a second by
// the next one or by its final, and the final is what a replay carries.
//
// The token travels as a WebSocket subprotocol (browsers cannot set headers on a WebSocket)
// or, in node with the `ws` package, as an Authorization header: never in the URL.

const JSON_PROTOCOL = "callcue.v1.json";
const MSGPACK_PROTOCOL = "callcue.v1.msgpack";

/** Event types a desk renders; `on("event")` gets every event, `on("status")` connection changes. */
export const EVENT_TYPES = Object.freeze([
  "hello", "call_started", "call_ended", "transcript", "signal", "hint", "hint_retracted", "alert",
  "approval_request", "bot_approval_request", "handoff", "action_update", "call_control", "playbook_paused", "playbook_resumed",
  "escalation", "anomaly", "dtmf", "error",
]);

/** The token as a subprotocol: base64url, so any token fits the subprotocol grammar. */
export function tokenProtocol(token) {
  const bytes = new TextEncoder().encode(token);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  const b64 = (typeof btoa === "function" ? btoa(bin) : Buffer.from(bin, "binary").toString("base64"));
  return "callcue.bearer." + b64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** msgpack from the optional @msgpack/msgpack package, or null when it is not installed. */
async function loadMsgpack() {
  try {
    const m = await import("@msgpack/msgpack");
    return { encode: (o) => m.encode(o), decode: (d) => m.decode(d) };
  } catch {
    return null;
  }
}

export class CallCueClient {
  /**
   * @param {object} o
   * @param {string} o.url          ws(s)://host/ws/agent
   * @param {string} o.token        bearer token (JWT or a demo token)
   * @param {"auto"|"json"|"msgpack"} [o.format]  auto: msgpack when the package loads, else JSON
   * @param {Function} [o.WebSocket] a WebSocket class (node: `import WebSocket from "ws"`)
   * @param {{encode: Function, decode: Function}} [o.codec] msgpack (default: the @msgpack/msgpack package, when it loads)
   * @param {boolean} [o.tokenInHeader] send the token as an Authorization header (node `ws` only)
   * @param {number} [o.minRetryMs] first reconnect delay (doubles, with jitter, up to maxRetryMs)
   * @param {number} [o.maxRetryMs]
   * @param {number} [o.requestTimeoutMs]
   */
  constructor(o) {
    if (!o || !o.url || !o.token) throw new TypeError("CallCueClient needs url and token");
    this.url = o.url;
    this.token = o.token;
    this.format = o.format || "auto";
    this.WebSocketImpl = o.WebSocket || globalThis.WebSocket || null; // node < 22: `ws`, loaded by connect()
    this.tokenInHeader = !!o.tokenInHeader;
    this.minRetryMs = o.minRetryMs ?? 500;
    this.maxRetryMs = o.maxRetryMs ?? 15000;
    this.requestTimeoutMs = o.requestTimeoutMs ?? 10000;
    this.state = "idle"; // idle | connecting | open | reconnecting | closed | rejected
    this.protocol = null;
    this.user = null;
    /** call_id -> highest numbered event handled */
    this.cursors = new Map();
    this._subs = new Map(); // call_id or "*" -> options
    this._handlers = new Map();
    this._waiting = new Map();
    this._nextId = 1;
    this._retryMs = this.minRetryMs;
    this._timer = null;
    this._ws = null;
    this._codec = o.codec || null;
    this._lastServerTime = 0;
    this._opened = null;
  }

  /** Listen to one event type ("hint", "transcript", ..., "event" for all, "status"); returns an unsubscribe function. */
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this._handlers.get(type)?.delete(fn);
  }

  _emit(type, ev) {
    for (const fn of this._handlers.get(type) || []) {
      try { fn(ev); } catch (e) { console.error("CallCue handler failed", e); }
    }
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("status", { state, ...detail });
  }

  /** Open the connection; resolves on the server's hello, rejects when the token is refused. */
  async connect() {
    if (!this.WebSocketImpl) {
      try {
        this.WebSocketImpl = (await import("ws")).default;
        this.tokenInHeader = true; // node: a header, which a browser cannot send
      } catch {
        throw new TypeError("no WebSocket: pass one, or install the `ws` package (node before 22)");
      }
    }
    if (this.format !== "json" && !this._codec) this._codec = await loadMsgpack();
    if (this.format === "msgpack" && !this._codec) throw new Error("format msgpack needs the @msgpack/msgpack package");
    this._closing = false;
    return new Promise((resolve, reject) => {
      this._opened = { resolve, reject };
      this._open();
    });
  }

  _open() {
    const offered = [];
    if (this._codec && this.format !== "json") offered.push(MSGPACK_PROTOCOL);
    offered.push(JSON_PROTOCOL);
    if (!this.tokenInHeader) offered.push(tokenProtocol(this.token));
    const opts = this.tokenInHeader ? { headers: { Authorization: `Bearer ${this.token}` } } : undefined;
    const ws = opts ? new this.WebSocketImpl(this.url, offered, opts) : new this.WebSocketImpl(this.url, offered);
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    this._setState(this.cursors.size || this._subs.size ? "reconnecting" : "connecting");
    ws.onopen = () => {
      this.protocol = ws.protocol || JSON_PROTOCOL;
    };
    ws.onmessage = (m) => this._receive(m.data);
    ws.onclose = (e) => this._closed(ws, e.code, e.reason);
    ws.onerror = () => {}; // onclose follows with the code
  }

  _decode(data) {
    if (typeof data === "string") return JSON.parse(data);
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer ?? data);
    if (this.protocol === MSGPACK_PROTOCOL && this._codec) return this._codec.decode(bytes);
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  _receive(data) {
    let ev;
    try { ev = this._decode(data); } catch { return; }
    if (!ev || typeof ev !== "object") return;
    if (ev.id !== undefined && this._waiting.has(ev.id)) {
      const w = this._waiting.get(ev.id);
      this._waiting.delete(ev.id);
      clearTimeout(w.timer);
      w.resolve(ev);
      return;
    }
    if (ev.type === "hello") return this._hello(ev);
    if (typeof ev.seq === "number" && ev.call_id) {
      const seen = this.cursors.get(ev.call_id) || 0;
      if (ev.seq <= seen) return; // replayed and live both carried it: handled once
      this.cursors.set(ev.call_id, ev.seq);
    }
    if (typeof ev.server_time === "number") this._lastServerTime = ev.server_time;
    else if (typeof ev.emitted_at === "number") this._lastServerTime = Math.max(this._lastServerTime, ev.emitted_at);
    this._emit(ev.type, ev);
    this._emit("event", ev);
  }

  async _hello(ev) {
    this.user = { user_id: ev.user_id, role: ev.role };
    this._retryMs = this.minRetryMs;
    const resumed = this.state === "reconnecting";
    this._setState("open", { protocol: this.protocol, user: this.user, resumed });
    this._emit("hello", ev);
    for (const [callId, opts] of this._subs) await this._subscribeNow(callId, opts, true);
    if (this._opened) { this._opened.resolve(ev); this._opened = null; }
  }

  _closed(ws, code, reason) {
    if (this._ws !== ws) return;
    this._ws = null;
    for (const [id, w] of this._waiting) {
      clearTimeout(w.timer);
      w.resolve({ type: "error", id, code: "disconnected", message: "connection closed before the reply" });
    }
    this._waiting.clear();
    if (this._closing) return this._setState("closed", { code });
    if (code === 1008) { // bad token or origin: retrying cannot fix it
      this._setState("rejected", { code, reason });
      if (this._opened) { this._opened.reject(new Error(`rejected: ${reason || code}`)); this._opened = null; }
      return;
    }
    const wait = Math.round(this._retryMs * (0.8 + Math.random() * 0.4));
    this._retryMs = Math.min(this._retryMs * 2, this.maxRetryMs);
    this._setState("reconnecting", { code, reason, retryInMs: wait });
    this._timer = setTimeout(() => this._open(), wait);
  }

  /** Close for good (no reconnect). */
  close() {
    this._closing = true;
    clearTimeout(this._timer);
    if (this._ws) this._ws.close(1000, "client closed");
    else this._setState("closed", {});
  }

  _send(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(this.protocol === MSGPACK_PROTOCOL && this._codec ? this._codec.encode(obj) : JSON.stringify(obj));
    return true;
  }

  /** Send a request and resolve with its reply (an `error` event when refused, not connected or late). */
  request(obj, timeoutMs = this.requestTimeoutMs) {
    const id = `r${this._nextId++}`;
    return new Promise((resolve) => {
      if (!this._send({ ...obj, id })) {
        resolve({ type: "error", id, code: "disconnected", message: "not connected" });
        return;
      }
      const timer = setTimeout(() => {
        this._waiting.delete(id);
        resolve({ type: "error", id, code: "timeout", message: `no reply within ${timeoutMs / 1000} s` });
      }, timeoutMs);
      this._waiting.set(id, { resolve, timer });
    });
  }

  /**
   * Watch one call ("call-id") or every call this user may see ("*"). One call: its events
   * so far are replayed first (history: false skips them). "*": live calls' histories only
   * with history: true. After a reconnect both resume from the cursors.
   */
  async subscribe(callId = "*", opts = {}) {
    this._subs.set(callId, { history: opts.history ?? callId !== "*" });
    return this._subscribeNow(callId, this._subs.get(callId), false);
  }

  _subscribeNow(callId, opts, resuming) {
    const msg = { type: "subscribe", call_id: callId };
    if (callId === "*") {
      if (resuming) {
        msg.since = Object.fromEntries(this.cursors);
        msg.since_time = this._lastServerTime;
      } else if (opts.history) msg.history = true;
    } else if (this.cursors.has(callId)) {
      msg.since = this.cursors.get(callId);
    } else if (!opts.history) msg.history = false;
    return this.request(msg).then((reply) => {
      this._emit(reply.type === "error" ? "error" : "subscribed", reply);
      return reply;
    });
  }

  /** Whether `callId` (or "*") is one of this client's subscriptions. */
  isSubscribed(callId) { return this._subs.has(callId); }

  async unsubscribe(callId = "*") {
    this._subs.delete(callId);
    return this.request({ type: "unsubscribe", call_id: callId });
  }

  // ---- the agent's answers to a hint
  accept(hintId) { return this.request({ type: "feedback", hint_id: hintId, action: "accepted" }); }
  dismiss(hintId, reason) { return this.request({ type: "feedback", hint_id: hintId, action: "dismissed", reason }); }
  correct(hintId, correction, reason) {
    return this.request({ type: "feedback", hint_id: hintId, action: "corrected", correction, reason });
  }

  // ---- supervisor commands (the server refuses them for agents)
  listActions(filter = {}) { return this.request({ type: "list_actions", ...filter }); }
  approve(actionId, note) { return this.request({ type: "approve", action_id: actionId, note }); }
  reject(actionId, reason) { return this.request({ type: "reject", action_id: actionId, reason }); }
  cancel(actionId, reason) { return this.request({ type: "cancel", action_id: actionId, reason }); }
  rollback(actionId, reason) { return this.request({ type: "rollback", action_id: actionId, reason }); }
  /** Replace a pending action (or a call's next one) with `action`, or drop it with null. */
  override({ actionId, callId, action = null, reason }) {
    return this.request({ type: "override", action_id: actionId, call_id: callId, action, reason });
  }
  pausePlaybook(playbookId, { callId, reason } = {}) {
    return this.request({ type: "pause_playbook", playbook_id: playbookId, call_id: callId, reason });
  }
  resumePlaybook(playbookId, { callId } = {}) {
    return this.request({ type: "resume_playbook", playbook_id: playbookId, call_id: callId });
  }
  listPlaybooks() { return this.request({ type: "list_playbooks" }); }
  auditQuery(filter = {}) { return this.request({ type: "audit_query", ...filter }); }
  kpis(by = "playbook") { return this.request({ type: "kpis", by }); }
  kbReport(since) { return this.request({ type: "kb_report", since }); }
  kbVersions() { return this.request({ type: "kb_versions" }); }
  ping() { return this.request({ type: "ping" }); }
}

/** Whether a hint event is a knowledge card (its attrs then follow `KnowledgeCard`). */
export function isKnowledgeCard(ev) {
  return !!ev && ev.type === "hint" && !!ev.attrs && ev.attrs.card === "knowledge";
}

/** Search the active knowledge base as the agent (GET /api/v1/kb/search; the token goes in
 *  the Authorization header, never in the URL). */
export async function searchKnowledge(baseUrl, token, q, { k = 5, fetchImpl = globalThis.fetch } = {}) {
  const url = new URL("/api/v1/kb/search", baseUrl);
  url.searchParams.set("q", q);
  url.searchParams.set("k", String(k));
  const r = await fetchImpl(url, { headers: { Authorization: `Bearer ${token}` } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}
