// CallCue agent desktop: live transcript per channel, signal chips, hint cards with feedback.
// Dependency-free on purpose: it is served as static files and must run in any browser an
// agent has, without a build step. Protocol: docs/agent-protocol.md (callcue.v1.json).
import { el, button, fmtTime, fmtClock, initialToken, Connection } from "./desk.js";

(() => {
  const $ = (id) => document.getElementById(id);
  const DISMISS_REASONS = ["not relevant", "already handled", "wrong intent", "customer declined", "other"];

  const state = {
    calls: new Map(), // call_id -> {info, ended, segs: Map(key -> transcript), hints: [], signals: Map, controls: []}
    selected: null,
  };
  // DOM nodes of the selected call's segments, so a partial is replaced in place instead of
  // re-rendering the whole transcript on every revision (dozens per second on a busy call)
  let segNodes = new Map();

  const conn = new Connection({
    onEvent: handle,
    onStatus: (text, ok) => { const s = $("status"); s.textContent = text; s.className = ok ? "ok" : "bad"; },
  });

  function call(id) {
    if (!state.calls.has(id)) {
      state.calls.set(id, { info: { call_id: id }, ended: false, segs: new Map(), hints: [], signals: new Map(), controls: [] });
      if (!state.selected) { state.selected = id; renderAll(); } else renderCalls();
    }
    return state.calls.get(id);
  }

  // ------------------------------------------------------------------ events

  function handle(ev) {
    switch (ev.type) {
      case "hello":
        $("status").textContent = `connected as ${ev.user_id} (${ev.role})`;
        $("status").className = "ok";
        break;
      case "subscribed":
        for (const info of ev.active_calls || []) Object.assign(call(info.call_id).info, info);
        for (const info of ev.recent_calls || []) { Object.assign(call(info.call_id).info, info); call(info.call_id).ended = true; }
        // opened after a call ended (the demo's, say): show that call with its history
        if (state.selected && state.calls.get(state.selected).ended) { conn.openCall(state.selected); renderAll(); }
        else renderCalls();
        break;
      case "call_started":
        Object.assign(call(ev.call_id).info, ev);
        call(ev.call_id).ended = false;
        renderCalls();
        break;
      case "call_ended":
        call(ev.call_id).ended = true;
        renderCalls();
        break;
      case "transcript": {
        const c = call(ev.call_id);
        const key = `${ev.channel}:${ev.segment_id}`;
        c.segs.set(key, ev); // a later revision replaces the earlier one of its segment wholesale
        if (ev.call_id === state.selected) placeSegment(key, ev);
        break;
      }
      case "signal":
        call(ev.call_id).signals.set(ev.signal_id, ev);
        if (ev.call_id === state.selected) {
          renderSignals(); renderMood();
          if (ev.kind === "replies") renderReplies();
          if (ev.kind === "checklist") renderChecklist();
        }
        break;
      case "hint":
        call(ev.call_id).hints.unshift({ ev, status: "", kind: "", form: null, retracted: false });
        if (ev.call_id === state.selected) renderHints();
        break;
      case "hint_retracted":
        for (const h of call(ev.call_id).hints) if (h.ev.hint_id === ev.hint_id) h.retracted = true;
        if (ev.call_id === state.selected) renderHints();
        break;
      case "handoff": {
        // the virtual agent hands this call to a person: what the caller wanted, what the
        // bot learned and did, shown first on the desk
        const c = call(ev.call_id);
        c.handoff = ev;
        if (!state.selected || state.calls.get(state.selected).ended) state.selected = ev.call_id;
        renderAll();
        break;
      }
      case "call_control":
        call(ev.call_id).controls.push(ev.control);
        if (ev.call_id === state.selected) renderBanner();
        break;
      case "feedback_ack":
        setHint(ev.hint_id, `saved: ${ev.action}`, "ok");
        break;
      default:
        break; // newer servers may add events; ignore what we do not know
    }
  }

  function findHint(hintId) {
    for (const c of state.calls.values()) for (const h of c.hints) if (h.ev.hint_id === hintId) return h;
    return null;
  }

  function setHint(hintId, status, kind) {
    const h = findHint(hintId);
    if (!h) return;
    h.status = status;
    h.kind = kind;
    if (kind === "ok") h.form = null;
    if (h.ev.call_id === state.selected) renderHints();
  }

  async function feedback(h, action, extra) {
    h.form = null;
    setHint(h.ev.hint_id, `${action}…`, "wait");
    const reply = await conn.request({ type: "feedback", hint_id: h.ev.hint_id, action, ...extra });
    if (reply.type === "error") setHint(h.ev.hint_id, `not saved: ${reply.message || reply.code}`, "err");
    // success is shown by the feedback_ack handler: the ack means the row is committed
  }

  // ------------------------------------------------------------------ rendering

  function renderCalls() {
    const box = $("calls");
    box.replaceChildren();
    if (!state.calls.size) return box.append(el("p", "empty", "No calls yet."));
    for (const [id, c] of state.calls) {
      const b = button(`${c.ended ? "■" : "●"} ${id.slice(0, 16)}`, (id === state.selected ? "sel " : "") + (c.ended ? "ended" : ""),
                       () => { state.selected = id; if (c.ended) conn.openCall(id); renderAll(); }, id);
      b.dataset.callId = id;
      b.append(el("span", "sub", `${c.info.platform || ""} ${c.info.agent_id ? "· " + c.info.agent_id : ""} ${c.ended ? "· ended" : "· live"}`));
      box.append(b);
    }
  }

  function segNode(ev) {
    const d = el("div", `seg ${ev.is_final ? "final" : "partial"}`);
    d.dataset.start = String(ev.start);
    d.append(el("span", "t", fmtTime(ev.start)), document.createTextNode(ev.text || ""));
    return d;
  }

  /** Insert or replace one segment of the selected call, keeping start-time order. */
  function placeSegment(key, ev) {
    const box = $(`tr-${ev.channel}`);
    if (!box) return; // a channel this page does not know
    const scroller = $("trbox");
    // follow the bottom, deciding once per frame: reading the scroll position after every
    // insert would force a layout per event (thousands on a long call's replay)
    if (followBottom === null) {
      followBottom = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 20;
      requestAnimationFrame(() => {
        if (followBottom) scroller.scrollTop = scroller.scrollHeight;
        followBottom = null;
      });
    }
    const node = segNode(ev);
    const old = segNodes.get(key);
    if (old) {
      old.replaceWith(node);
    } else {
      // the common case is a segment later than all shown: append without scanning (a
      // 60-minute call has thousands of segments and replays them all on late join)
      const last = box.lastElementChild;
      const after = !last || Number(last.dataset.start) <= ev.start ? null
        : [...box.children].find((n) => Number(n.dataset.start) > ev.start);
      box.insertBefore(node, after || null);
    }
    segNodes.set(key, node);
  }
  let followBottom = null;

  function renderTranscript() {
    const c = state.calls.get(state.selected);
    $("calltitle").textContent = c ? `Transcript — ${state.selected}` : "Transcript";
    segNodes = new Map();
    for (const ch of ["customer", "agent"]) $(`tr-${ch}`).replaceChildren();
    if (!c) return;
    const segs = [...c.segs.entries()].sort((a, b) => a[1].start - b[1].start);
    for (const [key, ev] of segs) placeSegment(key, ev);
  }

  /** A knowledge card: the passage that answers, its answering sentence marked, where it
   *  comes from (article, section, KB version), how sure, and which words matched. */
  function knowledgeCard(h) {
    const ev = h.ev;
    const a = ev.attrs || {};
    const card = el("article", "hint knowledge");
    if (h.kind === "ok") card.classList.add("done");
    if (h.retracted) card.classList.add("retracted");
    card.dataset.hintId = ev.hint_id;
    card.dataset.emittedAt = String(ev.emitted_at || 0);
    const head = el("h4", "", "");
    head.append(el("span", "tag", "KB"), document.createTextNode(` ${ev.title || "Knowledge"}`));
    card.append(head);
    if (a.section) card.append(el("div", "section", a.section));
    const body = el("div", "passage", "");
    const text = String(ev.body || "");
    const [s0, s1] = Array.isArray(a.span) ? a.span : [0, 0];
    if (s1 > s0) {
      body.append(document.createTextNode(text.slice(0, s0)), el("mark", "", text.slice(s0, s1)), document.createTextNode(text.slice(s1)));
    } else body.append(document.createTextNode(text));
    card.append(body);
    const meta = [typeof a.confidence === "number" ? `${Math.round(100 * a.confidence)}% match` : "",
                  a.kb_version != null ? `KB v${a.kb_version}` : "", fmtClock(ev.emitted_at),
                  h.retracted ? "retracted by supervisor" : ""].filter(Boolean).join(" · ");
    card.append(el("div", "meta", meta));
    if (Array.isArray(a.why) && a.why.length) card.append(el("div", "whyline", `Matched: ${a.why.join(", ")}`));
    const links = el("div", "acts");
    if (a.url) {
      const link = el("a", "article", "Open article");
      link.href = a.url; link.target = "_blank"; link.rel = "noopener noreferrer";
      links.append(link);
    }
    const copy = button("Copy", "copy", () => { copyReply(h, copy); if (h.kind !== "ok") feedback(h, "accepted", { reason: "copied" }); },
                        "Copy the answering sentence (y)");
    links.append(copy);
    if (h.status) links.append(el("span", `state ${h.kind}`, h.status));
    if (h.kind !== "ok" && h.kind !== "wait" && !h.retracted) {
      links.append(
        button("Useful", "accept", () => feedback(h, "accepted", { reason: "useful" }), "This answered the customer (a)"),
        button("Not useful", "dismiss", () => feedback(h, "dismissed", { reason: "not useful" }), "Wrong or no help (d)"),
      );
    }
    card.append(links);
    return card;
  }

  function hintCard(h) {
    const ev = h.ev;
    if (ev.attrs && ev.attrs.card === "knowledge") return knowledgeCard(h);
    const card = el("article", `hint ${["info", "warning", "critical"].includes(ev.severity) ? ev.severity : "info"}`);
    if (h.kind === "ok") card.classList.add("done");
    if (h.retracted) card.classList.add("retracted");
    card.dataset.hintId = ev.hint_id;
    card.append(el("h4", "", ev.title || "Hint"));
    if (ev.body) card.append(el("div", "body", ev.body));
    card.dataset.emittedAt = String(ev.emitted_at || 0);
    if (ev.suggested_reply) {
      card.append(el("div", "reply", `“${ev.suggested_reply}”`));
      const copy = button("Copy reply", "copy", () => copyReply(h, copy), "Copy the suggested reply (y)");
      card.append(copy);
    }
    card.append(el("div", "meta", [ev.source, fmtClock(ev.emitted_at), h.retracted ? "retracted by supervisor" : ""].filter(Boolean).join(" · ")));
    const why = button(h.why ? "Hide why" : "Why?", "why", () => { h.why = !h.why; renderHints(); }, "What this hint is based on (w)");
    card.append(why);
    if (h.why) card.append(whyPanel(h));
    const acts = el("div", "acts");
    if (h.status) acts.append(el("span", `state ${h.kind}`, h.status));
    if (h.kind !== "ok" && h.kind !== "wait" && !h.retracted) {
      if (h.form === "dismiss") acts.append(...dismissForm(h));
      else if (h.form === "correct") acts.append(...correctForm(h));
      else {
        acts.append(
          button("Accept", "accept", () => feedback(h, "accepted"), "The hint was right and I used it"),
          button("Dismiss", "dismiss", () => { h.form = "dismiss"; renderHints(); focusForm(ev.hint_id); }, "Not useful: say why"),
          button("Correct", "correct", () => { h.form = "correct"; renderHints(); focusForm(ev.hint_id); }, "The situation was something else"),
        );
      }
    }
    card.append(acts);
    return card;
  }

  /** The evidence behind a hint: its playbook and version, and each signal that raised it
   *  with its detector, confidence and the words it was found in (what the audit trail's
   *  hint_shown and signal entries record for it). */
  function whyPanel(h) {
    const box = el("div", "whybox");
    const [pb, ver] = String(h.ev.source || "").split("@");
    box.append(el("div", "", `Playbook ${pb || "?"}${ver ? ` version ${ver}` : ""}${h.ev.attrs && h.ev.attrs.autonomy ? ` · ${h.ev.attrs.autonomy}` : ""}`));
    const c = state.calls.get(h.ev.call_id);
    const ids = h.ev.signal_ids || [];
    if (!ids.length) box.append(el("div", "muted", "no detector signal: a phrase rule of the pipeline"));
    for (const id of ids) {
      const sig = c && c.signals.get(id);
      if (!sig) { box.append(el("div", "muted", `signal ${id} (not on this page)`)); continue; }
      const e = sig.evidence || {};
      const line = el("div", "ev");
      line.append(el("b", "", `${sig.kind}/${sig.name}`),
                  document.createTextNode(` ${(100 * (sig.confidence || 0)).toFixed(0)}% by ${sig.detector}@${sig.detector_version}`));
      if (e.text) {
        const q = el("q", "", "");
        const hit = new Set((e.words || []).map((w) => String(w).toLowerCase()));
        String(e.text).split(/(\s+)/).forEach((w) => {
          q.append(hit.has(w.toLowerCase().replace(/[.,!?;:]/g, "")) ? el("mark", "", w) : document.createTextNode(w));
        });
        line.append(document.createTextNode(` · ${e.channel || "?"} at ${fmtTime(e.start)}: `), q);
      }
      box.append(line);
    }
    return box;
  }

  async function copyReply(h, btn) {
    const text = h.ev.suggested_reply || h.ev.body || "";
    try { await navigator.clipboard.writeText(text); btn.textContent = "Copied"; }
    catch { btn.textContent = "Copy failed: select the text"; }
    setTimeout(() => { btn.textContent = "Copy reply"; }, 1500);
  }

  const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
  /** Open hints first, most urgent first, newest first within a severity. */
  function ranked(hints) {
    const open = (h) => (h.kind === "ok" || h.retracted ? 1 : 0);
    return [...hints].sort((a, b) => open(a) - open(b)
      || (SEVERITY_RANK[a.ev.severity] ?? 2) - (SEVERITY_RANK[b.ev.severity] ?? 2)
      || (b.ev.emitted_at || 0) - (a.ev.emitted_at || 0));
  }

  function dismissForm(h) {
    const sel = el("select", "reason");
    sel.setAttribute("aria-label", "dismiss reason");
    for (const r of DISMISS_REASONS) sel.append(new Option(r, r));
    const send = button("Send", "send", () => feedback(h, "dismissed", { reason: sel.value }));
    const cancel = button("Cancel", "cancel", () => { h.form = null; renderHints(); });
    sel.addEventListener("keydown", (e) => { if (e.key === "Enter") send.click(); if (e.key === "Escape") cancel.click(); });
    return [sel, send, cancel];
  }

  function correctForm(h) {
    const inp = el("input", "correction");
    inp.placeholder = "what was it really? (e.g. billing question)";
    inp.setAttribute("aria-label", "correction");
    inp.maxLength = 2000;
    const send = button("Send", "send", () => {
      const v = inp.value.trim();
      if (!v) { inp.focus(); return; }
      feedback(h, "corrected", { correction: v });
    });
    const cancel = button("Cancel", "cancel", () => { h.form = null; renderHints(); });
    inp.addEventListener("keydown", (e) => { if (e.key === "Enter") send.click(); if (e.key === "Escape") cancel.click(); });
    return [inp, send, cancel];
  }

  function focusForm(hintId) {
    const f = document.querySelector(`article[data-hint-id="${CSS.escape(hintId)}"] select, article[data-hint-id="${CSS.escape(hintId)}"] input`);
    if (f) f.focus();
  }

  /** The virtual agent's handoff: why, what the caller wanted, the slots it filled, what it
   *  did, and its one-line summary; the transcript so far is in the transcript pane. */
  function handoffCard(h) {
    const card = el("article", "hint handoff warning");
    card.append(el("h4", "", "Handed over by the virtual agent"));
    card.append(el("div", "body", h.summary || ""));
    const facts = el("dl", "facts");
    const row = (k, v) => { if (v) { facts.append(el("dt", "", k), el("dd", "", v)); } };
    row("Reason", h.reason);
    row("Wanted", h.wanted ? h.wanted.replace(/_/g, " ") : "");
    row("Details", Object.entries(h.slots || {}).map(([k, v]) => `${k}: ${v}`).join(", "));
    row("Done", (h.done || []).map((d) => d.task.replace(/_/g, " ")).join(", "));
    row("Flow", h.flow);
    card.append(facts);
    return card;
  }

  function renderHints() {
    const box = $("hints");
    box.replaceChildren();
    const c = state.calls.get(state.selected);
    if (c && c.handoff) box.append(handoffCard(c.handoff));
    if (!c || (!c.hints.length && !c.handoff)) return box.append(el("p", "empty", "No hints for this call yet."));
    for (const h of ranked(c.hints)) box.append(hintCard(h));
  }

  /** The selected call's mood and risks: the customer's latest sentiment with the last few
   *  before it, and the risks raised and not retracted. */
  function renderMood() {
    const box = $("mood");
    box.replaceChildren();
    const c = state.calls.get(state.selected);
    if (!c) return;
    const sigs = [...c.signals.values()].filter((s) => !s.retracted);
    const senti = sigs.filter((s) => s.kind === "sentiment" && (!s.evidence || s.evidence.channel !== "agent"));
    const last = senti.slice(-5);
    const now = last.length ? last[last.length - 1].name : "neutral";
    const m = el("span", `mood ${now}`, `Customer: ${now}`);
    m.title = last.map((s) => s.name).join(" → ") || "no sentiment yet";
    box.append(m);
    const risks = [...new Set(sigs.filter((s) => s.kind === "risk").map((s) => s.name))];
    box.append(el("span", `risk ${risks.length ? "on" : ""}`, risks.length ? `Risk: ${risks.join(", ")}` : "No risk flags"));
  }

  // keyboard: the top open hint (or the one holding focus) takes a / d / c / y / w
  function targetHint() {
    const c = state.calls.get(state.selected);
    if (!c) return null;
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("article.hint");
    if (focused) return c.hints.find((h) => h.ev.hint_id === focused.dataset.hintId) || null;
    return ranked(c.hints).find((h) => h.kind !== "ok" && h.kind !== "wait" && !h.retracted) || null;
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    const h = targetHint();
    if (!h) return;
    const key = e.key.toLowerCase();
    const isCard = h.ev.attrs && h.ev.attrs.card === "knowledge";
    if (key === "a") feedback(h, "accepted", isCard ? { reason: "useful" } : undefined);
    else if (key === "d" && isCard) feedback(h, "dismissed", { reason: "not useful" });
    else if (key === "d") { h.form = "dismiss"; renderHints(); focusForm(h.ev.hint_id); }
    else if (key === "c") { h.form = "correct"; renderHints(); focusForm(h.ev.hint_id); }
    else if (key === "w") { h.why = !h.why; renderHints(); }
    else if (key === "y" && h.ev.suggested_reply) {
      const b = document.querySelector(`article[data-hint-id="${CSS.escape(h.ev.hint_id)}"] button.copy`);
      if (b) copyReply(h, b);
    } else return;
    e.preventDefault();
  });

  function renderSignals() {
    const box = $("signals");
    box.replaceChildren();
    const c = state.calls.get(state.selected);
    if (!c) return;
    const sigs = [...c.signals.values()].filter((s) => s.kind !== "sentiment" || s.name !== "neutral").slice(-40).reverse();
    for (const s of sigs) {
      const conf = typeof s.confidence === "number" ? ` ${(s.confidence * 100).toFixed(0)}%` : "";
      const chip = el("span", `chip ${s.kind || ""}${s.retracted ? " retracted" : ""}`, `${s.name}${conf}`);
      chip.title = `${s.kind}: ${s.name}${s.evidence && s.evidence.text ? ` — “${s.evidence.text}”` : ""}`;
      box.append(chip);
    }
  }

  /** The replies the server ranked for the moment (the latest replies signal); copying one
   *  puts it on the clipboard and tells the server it was used, so the ranking learns. */
  function renderReplies() {
    const box = $("replies");
    box.replaceChildren();
    const c = state.calls.get(state.selected);
    const sig = c && [...c.signals.values()].filter((s) => s.kind === "replies" && !s.retracted).pop();
    const gone = (c && c.repliesGone) || new Set();
    const list = sig ? (sig.attrs.replies || []).filter((r) => !gone.has(r.id)) : [];
    if (!list.length) return box.append(el("p", "empty", "No suggested replies yet."));
    for (const r of list) {
      const row = el("div", "replyrow", "");
      row.dataset.replyId = r.id;
      row.append(el("span", "text", r.text));
      row.title = r.when || "";
      const copy = button("Copy", "copy", async () => {
        try { await navigator.clipboard.writeText(r.text); copy.textContent = "Copied"; } catch { copy.textContent = "Select the text"; }
        conn.request({ type: "reply_feedback", call_id: sig.call_id, reply_id: r.id, action: "copied" });
      }, "Copy this reply");
      const drop = button("×", "drop", () => {
        conn.request({ type: "reply_feedback", call_id: sig.call_id, reply_id: r.id, action: "dismissed" });
        (c.repliesGone = gone).add(r.id);
        renderReplies();
      }, "Not a fit: hide it");
      row.append(copy, drop);
      box.append(row);
    }
  }

  /** The call's checklist: each item ticked as the agent said it, what is left in order. */
  function renderChecklist() {
    const box = $("checklist");
    box.replaceChildren();
    const c = state.calls.get(state.selected);
    const latest = new Map();
    for (const s of c ? c.signals.values() : []) if (s.kind === "checklist" && !s.retracted) latest.set(s.attrs.checklist, s);
    if (!latest.size) return box.append(el("p", "empty", "No checklist for this call."));
    for (const s of latest.values()) {
      const ol = el("ol", "checklist", "");
      ol.setAttribute("aria-label", s.attrs.title || s.attrs.checklist);
      for (const it of s.attrs.items || []) {
        const li = el("li", it.done ? "done" : "todo", `${it.done ? "✓" : "○"} ${it.label}`);
        li.dataset.item = it.id;
        ol.append(li);
      }
      box.append(ol);
    }
  }

  /** The agent's own pause of the call's recording (a card number about to be read, a
   *  private moment); the server audits it and says so to every desk on the call. */
  function renderRecButton() {
    const b = $("recbtn");
    const c = state.calls.get(state.selected);
    const rec = c ? c.controls.filter((x) => x.endsWith("_recording")).pop() || "" : "";
    b.hidden = !c || c.ended;
    b.textContent = rec === "pause_recording" ? "Resume recording" : "Pause recording";
  }

  $("recbtn").addEventListener("click", async () => {
    const c = state.calls.get(state.selected);
    if (!c) return;
    const rec = c.controls.filter((x) => x.endsWith("_recording")).pop() || "";
    const action = rec === "pause_recording" ? "resume" : "pause";
    const r = await conn.request({ type: "recording", call_id: state.selected, action });
    if (r.type === "error") $("banner").textContent = `recording: ${r.message || r.code}`;
  });

  function renderBanner() {
    renderRecButton();
    const c = state.calls.get(state.selected);
    const last = c && c.controls.length ? c.controls[c.controls.length - 1] : "";
    const b = $("banner");
    b.className = last.startsWith("pause_") ? "on" : "";
    b.textContent = last.startsWith("pause_") ? `Paused on this call: ${last.slice(6).replace(/_/g, " ")}` : "";
  }

  function renderAll() {
    renderCalls();
    renderTranscript();
    renderHints();
    renderSignals();
    renderMood();
    renderReplies();
    renderChecklist();
    renderBanner();
  }

  // ------------------------------------------------------------------ the agent's own KB search

  async function searchKb(q) {
    const box = $("kbresults");
    box.replaceChildren(el("p", "empty", "Searching…"));
    try {
      const r = await fetch(`/api/v1/kb/search?q=${encodeURIComponent(q)}&k=5`, {
        headers: { Authorization: `Bearer ${sessionStorage.getItem("callcue.token") || $("token").value.trim()}` },
      });
      const body = await r.json();
      box.replaceChildren();
      if (!r.ok) return box.append(el("p", "empty", body.error || `search failed (${r.status})`));
      if (!body.results.length) return box.append(el("p", "empty", "Nothing found."));
      for (const res of body.results) {
        const item = el("div", "kbres", "");
        const title = el("b", "", res.title + (res.section ? ` — ${res.section}` : ""));
        item.append(title, el("div", "passage", res.text));
        if (res.url) { const a = el("a", "article", "Open article"); a.href = res.url; a.target = "_blank"; a.rel = "noopener noreferrer"; item.append(a); }
        box.append(item);
      }
    } catch (e) {
      box.replaceChildren(el("p", "empty", `search failed: ${e.message}`));
    }
  }

  $("kbsearch").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("kbq").value.trim();
    if (q) searchKb(q);
  });

  // ------------------------------------------------------------------ start

  const token = initialToken();
  $("token").value = token;
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("token").value.trim();
    sessionStorage.setItem("callcue.token", t);
    conn.start(t);
  });
  renderAll();
  if (token) conn.start(token);
})();
