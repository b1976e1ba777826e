// Shared by the agent desktop and the supervisor console: DOM helpers that cannot inject
// markup, the token handling of a page, and the page's connection, which is the library's
// CallCueClient (callcue.js) with the status lines a person reads. ES module, no build step.
import { CallCueClient } from "./callcue.js";

// msgpack for the pages: the package `npm install` put beside them (a page cannot resolve a
// bare module name without an inline import map, which the pages do not use); JSON without it
const MSGPACK = import("./node_modules/@msgpack/msgpack/dist.esm/index.mjs")
  .then((m) => ({ encode: (o) => m.encode(o), decode: (d) => m.decode(d) }))
  .catch(() => null);

/** Create an element whose text is set with textContent: server data (transcripts, hint
 *  text, reasons typed by people) is untrusted and must never be parsed as HTML. */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

export function button(label, cls, onClick, title) {
  const b = el("button", cls, label);
  b.type = "button";
  if (title) b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

export function fmtTime(s) {
  if (typeof s !== "number" || !isFinite(s)) return "–";
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
}

export function fmtClock(unix) {
  return typeof unix === "number" && unix > 0 ? new Date(unix * 1000).toLocaleTimeString() : "";
}

/** The token from #token= (a fragment never leaves the browser) or ?token=, then removed
 *  from the address bar so it does not end up in history or a shared screenshot; else
 *  from this tab's sessionStorage. */
export function initialToken() {
  const url = new URL(location.href);
  const frag = new URLSearchParams(url.hash.replace(/^#/, ""));
  const t = frag.get("token") || url.searchParams.get("token");
  if (t) {
    sessionStorage.setItem("callcue.token", t);
    url.searchParams.delete("token");
    frag.delete("token");
    const rest = frag.toString();
    history.replaceState(null, "", url.pathname + url.search + (rest ? "#" + rest : ""));
    return t;
  }
  return sessionStorage.getItem("callcue.token") || "";
}

/**
 * The page's connection: a CallCueClient (reconnect with backoff and jitter, resume from
 * the last event numbers, msgpack when its package is served) plus the status line. A 1008
 * close (bad token) is final: retrying cannot fix it.
 */
export class Connection {
  constructor({ onEvent, onStatus, onHello }) {
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.onHello = onHello || (() => {});
    this.client = null;
  }

  async start(token) {
    this.stop();
    if (!token) return this.onStatus("enter a token", false);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const gen = (this._gen = (this._gen || 0) + 1);
    const codec = await MSGPACK;
    if (gen !== this._gen) return; // started again (or stopped) meanwhile
    const c = new CallCueClient({ url: `${proto}//${location.host}/ws/agent`, token, minRetryMs: 1000, maxRetryMs: 15000,
                                  format: codec ? "msgpack" : "json", codec: codec || undefined });
    this.client = c;
    c.on("status", (s) => {
      if (this.client !== c) return;
      if (s.state === "connecting") this.onStatus("connecting…", false);
      else if (s.state === "reconnecting" && s.retryInMs !== undefined)
        this.onStatus(`disconnected (${s.code}); retrying in ${(s.retryInMs / 1000).toFixed(1)} s`, false);
      else if (s.state === "rejected") this.onStatus(`rejected: ${s.reason || "bad token"}`, false);
    });
    let subscribed = false;
    c.on("hello", (ev) => {
      if (this.client !== c) return;
      this.onEvent(ev);
      // once: after a reconnect the client resubscribes with its cursors by itself
      if (!subscribed) { subscribed = true; c.subscribe("*", { history: true }); }
      this.onHello(ev);
    });
    c.on("subscribed", (ev) => { if (this.client === c) this.onEvent(ev); });
    c.on("event", (ev) => { if (this.client === c) this.onEvent(ev); });
    c.connect().catch(() => {}); // a refusal is shown by the status handler
  }

  stop() {
    this._gen = (this._gen || 0) + 1;
    if (this.client) {
      const old = this.client;
      this.client = null;
      old.close();
    }
  }

  get open() {
    return !!this.client && this.client.state === "open";
  }

  /** Load one call's history (an ended call picked from the list). */
  openCall(id) {
    if (!this.client || this.client.isSubscribed(id)) return;
    this.client.subscribe(id);
  }

  /** Send with an id and resolve with the reply (an `error` event when it failed). */
  request(obj, timeoutMs = 10000) {
    if (!this.client) return Promise.resolve({ type: "error", code: "disconnected", message: "not connected" });
    return this.client.request(obj, timeoutMs).then((reply) => {
      if (reply.type !== "error") this.onEvent(reply); // pages react to results as to events
      return reply;
    });
  }

  send(obj) {
    if (!this.open) return false;
    this.request(obj);
    return true;
  }
}
