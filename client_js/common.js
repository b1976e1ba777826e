// Shared by the agent desktop and the supervisor console: DOM helpers that cannot inject
// markup, and one /ws/agent connection with reconnect. A plain script (no modules, no build)
// so both pages stay two static files plus this one, loadable from any web server.
"use strict";

window.CallCue = (() => {
  /** Create an element whose text is set with textContent: server data (transcripts, hint
   *  text, reasons typed by people) is untrusted and must never be parsed as HTML. */
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function button(label, cls, onClick, title) {
    const b = el("button", cls, label);
    b.type = "button";
    if (title) b.title = title;
    b.addEventListener("click", onClick);
    return b;
  }

  function fmtTime(s) {
    if (typeof s !== "number" || !isFinite(s)) return "–";
    const m = Math.floor(s / 60);
    return `${m}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  }

  function fmtClock(unix) {
    return typeof unix === "number" && unix > 0 ? new Date(unix * 1000).toLocaleTimeString() : "";
  }

  /** The token from #token= (a fragment never leaves the browser) or ?token=, then removed
   *  from the address bar so it does not end up in history or a shared screenshot; else
   *  from this tab's sessionStorage. */
  function initialToken() {
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

  /** The token as a WebSocket subprotocol (browsers cannot set an Authorization header on
   *  a WebSocket): base64url so any token fits the subprotocol grammar; never in the URL. */
  function tokenProtocol(token) {
    const b64 = btoa(unescape(encodeURIComponent(token))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    return "callcue.bearer." + b64;
  }

  /**
   * One `/ws/agent` connection (subprotocol callcue.v1.json) that reconnects with
   * exponential backoff and jitter, so a server restart does not get hammered by every
   * open desktop at once. A 1008 close (bad token) is final: retrying cannot fix it.
   */
  class Connection {
    constructor({ onEvent, onStatus, onOpen }) {
      this.onEvent = onEvent;
      this.onStatus = onStatus;
      this.onOpen = onOpen || (() => {});
      this.ws = null;
      this.token = "";
      this.retryMs = 1000;
      this.timer = null;
      this.nextId = 1;
      this.waiting = new Map(); // request id -> {resolve, timer}
    }

    start(token) {
      this.stop();
      this.token = token;
      this.retryMs = 1000;
      this._open();
    }

    stop() {
      clearTimeout(this.timer);
      if (this.ws) {
        const old = this.ws;
        this.ws = null;
        old.close(1000, "client closed");
      }
    }

    get open() {
      return !!this.ws && this.ws.readyState === WebSocket.OPEN;
    }

    _open() {
      if (!this.token) return this.onStatus("enter a token", false);
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(`${proto}//${location.host}/ws/agent`, ["callcue.v1.json", tokenProtocol(this.token)]);
      this.ws = ws;
      this.onStatus("connecting…", false);
      ws.onopen = () => this.onOpen();
      ws.onmessage = (m) => {
        let ev;
        try { ev = JSON.parse(m.data); } catch { return; }
        if (!ev || typeof ev !== "object") return;
        if (ev.type === "hello") this.retryMs = 1000;
        if (ev.id !== undefined && this.waiting.has(ev.id)) {
          const w = this.waiting.get(ev.id);
          this.waiting.delete(ev.id);
          clearTimeout(w.timer);
          w.resolve(ev);
        }
        this.onEvent(ev);
      };
      ws.onclose = (e) => {
        if (this.ws !== ws) return; // replaced or stopped on purpose
        this.ws = null;
        for (const [id, w] of this.waiting) {
          clearTimeout(w.timer);
          w.resolve({ type: "error", id, code: "disconnected", message: "connection closed before the reply" });
        }
        this.waiting.clear();
        if (e.code === 1008) return this.onStatus(`rejected: ${e.reason || "bad token"}`, false);
        const wait = Math.round(this.retryMs * (0.8 + Math.random() * 0.4));
        this.onStatus(`disconnected (${e.code}); retrying in ${(wait / 1000).toFixed(1)} s`, false);
        this.timer = setTimeout(() => this._open(), wait);
        this.retryMs = Math.min(this.retryMs * 2, 15000);
      };
    }

    /** Send without waiting; false when not connected (the caller tells the user). */
    send(obj) {
      if (!this.open) return false;
      this.ws.send(JSON.stringify(obj));
      return true;
    }

    /** Send with an id and resolve with the reply that echoes it (or an `error` event). */
    request(obj, timeoutMs = 10000) {
      const id = `r${this.nextId++}`;
      return new Promise((resolve) => {
        if (!this.send({ ...obj, id })) {
          resolve({ type: "error", id, code: "disconnected", message: "not connected" });
          return;
        }
        const timer = setTimeout(() => {
          this.waiting.delete(id);
          resolve({ type: "error", id, code: "timeout", message: `no reply within ${timeoutMs / 1000} s` });
        }, timeoutMs);
        this.waiting.set(id, { resolve, timer });
      });
    }
  }

  return { el, button, fmtTime, fmtClock, initialToken, Connection };
})();
