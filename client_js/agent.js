// CallCue agent desktop: live transcript per channel, hint cards with feedback.
// Dependency-free on purpose: it is served as two static files and must run in any browser
// an agent has, without a build step. Protocol: docs/agent-protocol.md (callcue.v1.json).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    ws: null,
    calls: new Map(), // call_id -> {info, ended, segs: Map("channel:segment_id" -> transcript), hints: [], signals: Map}
    selected: null,
    retryMs: 1000,
    token: "",
    pending: new Map(), // request id -> hint_id awaiting feedback_ack
    nextId: 1,
  };

  function call(id) {
    if (!state.calls.has(id)) {
      state.calls.set(id, { info: { call_id: id }, ended: false, segs: new Map(), hints: [], signals: new Map() });
      if (!state.selected) state.selected = id;
      renderCalls();
    }
    return state.calls.get(id);
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text; // never innerHTML: transcripts are untrusted
    return e;
  }

  function fmtTime(s) {
    const m = Math.floor(s / 60);
    return `${m}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  }

  function setStatus(text, ok) {
    const s = $("status");
    s.textContent = text;
    s.className = ok ? "ok" : "bad";
  }

  // ------------------------------------------------------------------ connection

  function connect() {
    if (!state.token) return setStatus("enter a token", false);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    // Browsers cannot set an Authorization header on a WebSocket, hence ?token=.
    const url = `${proto}//${location.host}/ws/agent?token=${encodeURIComponent(state.token)}`;
    const ws = new WebSocket(url, ["callcue.v1.json"]);
    state.ws = ws;
    setStatus("connecting…", false);
    ws.onopen = () => {
      state.retryMs = 1000;
      send({ type: "subscribe", call_id: "*" });
    };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      handle(ev);
    };
    ws.onclose = (e) => {
      if (state.ws !== ws) return;
      if (e.code === 1008) return setStatus(`rejected: ${e.reason || "bad token"}`, false);
      setStatus(`disconnected (${e.code}); retrying`, false);
      setTimeout(connect, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, 15000); // back off, never hammer the server
    };
  }

  function send(obj) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  // ------------------------------------------------------------------ events

  function handle(ev) {
    switch (ev.type) {
      case "hello":
        setStatus(`connected as ${ev.user_id} (${ev.role})`, true);
        break;
      case "subscribed":
        for (const info of ev.active_calls || []) Object.assign(call(info.call_id).info, info);
        renderCalls();
        break;
      case "call_started":
        Object.assign(call(ev.call_id).info, ev);
        renderCalls();
        break;
      case "call_ended":
        call(ev.call_id).ended = true;
        renderCalls();
        break;
      case "transcript": {
        const c = call(ev.call_id);
        // a later partial replaces the earlier one of its segment wholesale
        c.segs.set(`${ev.channel}:${ev.segment_id}`, ev);
        if (ev.call_id === state.selected) renderTranscript();
        break;
      }
      case "signal": {
        const c = call(ev.call_id);
        c.signals.set(ev.signal_id, ev);
        if (ev.call_id === state.selected) renderSignals();
        break;
      }
      case "hint": {
        const c = call(ev.call_id);
        c.hints.unshift({ ev, done: "" });
        if (ev.call_id === state.selected) renderHints();
        break;
      }
      case "feedback_ack": {
        markHint(ev.hint_id, ev.action);
        break;
      }
      case "error":
        if (ev.id && state.pending.has(ev.id)) {
          markHint(state.pending.get(ev.id), `error: ${ev.message}`);
          state.pending.delete(ev.id);
        }
        console.warn("callcue error", ev);
        break;
      default:
        break; // newer servers may add events; ignore what we do not know
    }
  }

  function markHint(hintId, text) {
    for (const c of state.calls.values()) {
      for (const h of c.hints) if (h.ev.hint_id === hintId) h.done = text;
    }
    renderHints();
  }

  function feedback(hint, action) {
    const id = `fb${state.nextId++}`;
    if (send({ type: "feedback", id, hint_id: hint.ev.hint_id, action })) {
      state.pending.set(id, hint.ev.hint_id);
      hint.done = `${action}…`;
    } else {
      hint.done = "not sent: disconnected";
    }
    renderHints();
  }

  // ------------------------------------------------------------------ rendering

  function renderCalls() {
    const box = $("calls");
    box.replaceChildren();
    for (const [id, c] of state.calls) {
      const b = el("button", (id === state.selected ? "sel " : "") + (c.ended ? "ended" : ""));
      b.textContent = `${c.ended ? "■" : "●"} ${id.slice(0, 14)}`;
      b.title = id;
      b.onclick = () => { state.selected = id; renderAll(); };
      box.append(b);
    }
  }

  function renderTranscript() {
    const c = state.calls.get(state.selected);
    $("calltitle").textContent = c ? `Transcript — ${state.selected}` : "Transcript";
    for (const ch of ["customer", "agent"]) {
      const box = $(`tr-${ch}`);
      const stick = box.parentElement.parentElement.parentElement;
      const atBottom = stick.scrollTop + stick.clientHeight >= stick.scrollHeight - 20;
      box.replaceChildren();
      if (!c) continue;
      const segs = [...c.segs.values()].filter((s) => s.channel === ch).sort((a, b) => a.start - b.start);
      for (const s of segs) {
        const d = el("div", `seg ${s.is_final ? "final" : "partial"}`);
        d.append(el("span", "t", fmtTime(s.start)), document.createTextNode(s.text));
        box.append(d);
      }
      if (atBottom) stick.scrollTop = stick.scrollHeight;
    }
  }

  function renderHints() {
    const box = $("hints");
    box.replaceChildren();
    const c = state.calls.get(state.selected);
    if (!c) return;
    for (const h of c.hints) {
      const ev = h.ev;
      const card = el("div", `hint ${ev.severity || "info"}${h.done ? " done" : ""}`);
      card.append(el("h4", "", ev.title || "Hint"));
      if (ev.body) card.append(el("div", "", ev.body));
      if (ev.suggested_reply) card.append(el("div", "reply", `“${ev.suggested_reply}”`));
      card.append(el("div", "meta", `${ev.source || ""} · ${new Date((ev.emitted_at || 0) * 1000).toLocaleTimeString()}`));
      const acts = el("div", "acts");
      if (h.done) {
        acts.append(el("span", "meta", h.done));
      } else {
        const ok = el("button", "accept", "Accept");
        ok.onclick = () => feedback(h, "accepted");
        const no = el("button", "dismiss", "Dismiss");
        no.onclick = () => feedback(h, "dismissed");
        acts.append(ok, no);
      }
      card.append(acts);
      box.append(card);
    }
  }

  function renderSignals() {
    const box = $("signals");
    box.replaceChildren();
    const c = state.calls.get(state.selected);
    if (!c) return;
    const sigs = [...c.signals.values()].filter((s) => s.kind !== "sentiment" || s.name !== "neutral").slice(-30).reverse();
    for (const s of sigs) {
      const conf = typeof s.confidence === "number" ? ` ${(s.confidence * 100).toFixed(0)}%` : "";
      box.append(el("div", `signal${s.retracted ? " retracted" : ""}`, `${s.kind}: ${s.name}${conf}`));
    }
  }

  function renderAll() {
    renderCalls();
    renderTranscript();
    renderHints();
    renderSignals();
  }

  // ------------------------------------------------------------------ start

  const params = new URLSearchParams(location.search);
  state.token = params.get("token") || sessionStorage.getItem("callcue.token") || "";
  $("token").value = state.token;
  $("login").onsubmit = (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("callcue.token", state.token);
    if (state.ws) { const old = state.ws; state.ws = null; old.close(); }
    connect();
  };
  if (state.token) connect();
})();
