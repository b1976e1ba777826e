// CallCue supervisor console: live calls, a feed of what the playbooks do, approvals, the
// kill switch per playbook (global or per call) and hint KPIs. Dependency-free and without a
// build step like the agent desktop. Commands go over /ws/agent (docs/playbooks.md, "Human
// control"); KPIs come from REST so the console also proves the bearer-token REST path.
import { el, button, fmtClock, fmtTime, initialToken, Connection } from "./desk.js";

(() => {
  const $ = (id) => document.getElementById(id);
  const FEED_MAX = 300;
  const FEED_TYPES = new Set(["hint", "alert", "escalation", "action_update", "approval_request", "bot_approval_request", "anomaly",
                              "playbook_paused", "playbook_resumed", "hint_retracted", "call_started", "call_ended"]);

  const state = {
    token: "",
    calls: new Map(), // call_id -> {info, ended, finals: Map(key -> transcript), moods: [names], risks: Set}
    selected: null,
    sort: ["duration", -1], // [column, 1 ascending | -1 descending]
    approvals: new Map(), // firing_id -> {req, result, busy}
    playbooks: [],
    feed: [], // newest first: {ev, at}
    armed: null, // playbook id whose global kill switch awaits its confirming click
    armTimer: null,
    latest: new Map(), // action_id -> newest action_update event
    actionNotes: new Map(), // action_id -> {ok, text}: outcome of a cancel/rollback clicked here
  };

  const conn = new Connection({
    onEvent: handle,
    onStatus: (text, ok) => { const s = $("status"); s.textContent = text; s.className = ok ? "ok" : "bad"; },
  });

  function call(id) {
    if (!state.calls.has(id)) state.calls.set(id, { info: { call_id: id }, ended: false, finals: new Map(), moods: [], risks: new Set() });
    return state.calls.get(id);
  }

  function note(text, ok) {
    const m = $("msg");
    m.textContent = text;
    m.className = ok ? "ok" : "err";
  }

  // ------------------------------------------------------------------ events

  function handle(ev) {
    switch (ev.type) {
      case "hello":
        if (ev.role !== "supervisor") {
          $("status").textContent = `connected as ${ev.user_id}, but role ${ev.role}: supervisor commands will be refused`;
          $("status").className = "bad";
        } else {
          $("status").textContent = `connected as ${ev.user_id} (supervisor)`;
          $("status").className = "ok";
        }
        break;
      case "subscribed":
        for (const info of ev.active_calls || []) Object.assign(call(info.call_id).info, info);
        for (const info of ev.recent_calls || []) { Object.assign(call(info.call_id).info, info); call(info.call_id).ended = true; }
        if (!state.selected && ev.call_id === "*" && state.calls.size) {
          // a live call first, else the call that ended last (recent_calls are newest first)
          const live = (ev.active_calls || [])[0], recent = (ev.recent_calls || [])[0];
          const pick = (live || recent || {}).call_id;
          if (pick) { select(pick); refreshAll(); break; }
        }
        renderCalls();
        refreshAll();
        break;
      case "call_started":
        Object.assign(call(ev.call_id).info, ev);
        call(ev.call_id).ended = false;
        if (!state.selected) state.selected = ev.call_id;
        renderCalls();
        renderPlaybooks();
        break;
      case "call_ended":
        call(ev.call_id).ended = true;
        call(ev.call_id).endedAt = ev.emitted_at || Date.now() / 1000;
        // pending approvals die with their call (the engine cancels them): drop them here too
        for (const [fid, a] of state.approvals) if (a.req.call_id === ev.call_id && !a.result) state.approvals.delete(fid);
        renderCalls();
        renderApprovals();
        break;
      case "transcript":
        if (ev.is_final) {
          call(ev.call_id).finals.set(`${ev.channel}:${ev.segment_id}`, ev);
          if (ev.call_id === state.selected) renderLines();
        }
        break;
      case "signal": {
        const c = call(ev.call_id);
        if (ev.kind === "sentiment" && !ev.retracted && (!ev.evidence || ev.evidence.channel !== "agent")) c.moods.push(ev.name);
        if (ev.kind === "risk") (ev.retracted ? c.risks.delete(ev.name) : c.risks.add(ev.name));
        scheduleCalls();
        break;
      }
      case "approval_request":
        state.approvals.set(ev.firing_id, { req: { ...ev, deadline_at: ev.deadline_at || Date.now() / 1000 + (ev.deadline_s || 0) },
                                            result: "", busy: false });
        renderApprovals();
        break;
      case "bot_approval_request":
        // the virtual agent holds the caller while a person decides (docs/virtual-agent.md)
        state.approvals.set(`bot:${ev.action_id}`, { req: { ...ev, bot: true,
          deadline_at: ev.deadline_at || Date.now() / 1000 + (ev.deadline_s || 0) }, result: "", busy: false });
        renderApprovals();
        break;
      case "action_update":
        if (ev.from === "pending_approval") settleApproval(ev);
        if (ev.call_id === state.selected) loadTrail();
        break;
      case "playbook_paused":
      case "playbook_resumed":
        loadPlaybooks();
        break;
      case "qa_scored":
      case "summary_ready":
        if (ev.call_id === state.selected) loadScorecard();
        break;
      default:
        break;
    }
    if (FEED_TYPES.has(ev.type)) addFeed(ev);
  }

  /** An action left pending_approval (approved here or elsewhere, expired, cancelled):
   *  show the outcome on its card for a moment, then remove it. */
  function settleApproval(ev) {
    for (const [fid, a] of state.approvals) {
      if (!(a.req.actions || []).some((r) => r.action_id === ev.action_id)) continue;
      a.result = `${ev.state} by ${ev.actor}`;
      renderApprovals();
      setTimeout(() => { state.approvals.delete(fid); renderApprovals(); }, 8000);
    }
  }

  // ------------------------------------------------------------------ commands

  async function command(msg) {
    const reply = await conn.request(msg);
    if (reply.type === "error") note(`${msg.type}: ${reply.message || reply.code}`, false);
    return reply;
  }

  async function refreshAll() {
    loadPlaybooks();
    loadKpis();
    loadKbReport();
    const r = await command({ type: "list_actions", state: "pending_approval" });
    if (r.type === "error") return;
    const byFiring = new Map();
    for (const a of r.actions || []) {
      if (!byFiring.has(a.firing_id)) byFiring.set(a.firing_id, []);
      byFiring.get(a.firing_id).push(a);
    }
    for (const [fid, acts] of byFiring) {
      if (state.approvals.has(fid)) continue;
      const a0 = acts[0];
      state.approvals.set(fid, { req: { firing_id: fid, call_id: a0.call_id, agent_id: a0.agent_id, playbook_id: a0.playbook_id,
                                        playbook_version: a0.playbook_version, actions: acts, deadline_at: a0.deadline_at },
                                 result: "", busy: false });
    }
    renderApprovals();
  }

  async function loadPlaybooks() {
    const r = await command({ type: "list_playbooks" });
    if (r.type === "error") return;
    state.playbooks = r.playbooks || [];
    renderPlaybooks();
  }

  async function decide(a, verb, text) {
    a.busy = true;
    renderApprovals();
    const id = a.req.bot ? a.req.action_id : a.req.actions[0].action_id;
    const type = (a.req.bot ? "bot_" : "") + verb;
    const msg = verb === "approve" ? { type, action_id: id, note: text || "" } : { type, action_id: id, reason: text || "" };
    const r = await command(msg);
    a.busy = false;
    if (r.type === "error") a.result = `${verb} failed: ${r.message || r.code}`;
    else a.result = verb === "approve" ? "approved" : "rejected";
    renderApprovals();
  }

  async function pause(pid, callId) {
    const msg = { type: "pause_playbook", playbook_id: pid, reason: callId ? "paused for one call from the console" : "kill switch" };
    if (callId) msg.call_id = callId;
    const r = await command(msg);
    if (r.type !== "error") note(`${pid} paused ${callId ? "on call " + callId : "everywhere"}; ${r.cancelled_actions} pending action(s) cancelled`, true);
    loadPlaybooks();
  }

  async function resume(pid, callId) {
    const msg = { type: "resume_playbook", playbook_id: pid };
    if (callId) msg.call_id = callId;
    const r = await command(msg);
    if (r.type !== "error") note(`${pid} resumed ${callId ? "on call " + callId : "everywhere"}`, true);
    loadPlaybooks();
  }

  /** KPIs over REST with the token as a Bearer header (the same numbers as the WS `kpis`). */
  async function loadKpis() {
    const by = $("kpiby").value;
    let body;
    try {
      const r = await fetch(`/api/v1/kpis?by=${encodeURIComponent(by)}`, { headers: { Authorization: `Bearer ${state.token}` } });
      body = await r.json();
      if (!r.ok) throw new Error((body.error && body.error.message) || `HTTP ${r.status}`);
    } catch (e) {
      note(`KPIs: ${e.message}`, false);
      return;
    }
    renderKpis(by, body.kpis || []);
    drawCharts(by, body.kpis || []);
    const other = by === "playbook" ? "agent" : "playbook";
    try {
      const r2 = await fetch(`/api/v1/kpis?by=${other}`, { headers: { Authorization: `Bearer ${state.token}` } });
      if (r2.ok) drawCharts(other, (await r2.json()).kpis || []);
    } catch { /* the table above already says what failed */ }
  }

  /** Which knowledge passages agents found useful and which they dismissed (`kb_report`). */
  async function loadKbReport() {
    const tb = $("kbreport").querySelector("tbody");
    let body;
    try {
      const r = await fetch("/api/v1/kb/report", { headers: { Authorization: `Bearer ${state.token}` } });
      body = await r.json();
      if (!r.ok) throw new Error((body.error && body.error.message) || `HTTP ${r.status}`);
    } catch (e) {
      const tr = el("tr", "");
      tr.append(el("td", "empty", `knowledge report: ${e.message}`));
      tb.replaceChildren(tr);
      return;
    }
    const rows = body.articles || [];
    if (!rows.length) {
      const tr = el("tr", "");
      tr.append(el("td", "empty", "No knowledge cards shown yet."));
      tb.replaceChildren(tr);
      return;
    }
    tb.replaceChildren(...rows.slice(0, 20).map((a) => {
      const tr = el("tr", a.helpful_rate !== null && a.helpful_rate < 0.4 ? "weak" : "");
      const name = el("td", "", `${a.title || ""} (${a.passage_id})`);
      tr.append(name, el("td", "", String(a.shown)), el("td", "", String(a.accepted)), el("td", "", String(a.dismissed)),
                el("td", "", a.helpful_rate === null ? "–" : `${Math.round(100 * a.helpful_rate)}%`));
      return tr;
    }));
  }

  const charts = {};
  /** Acceptance per playbook / per agent as stacked bars (accepted, dismissed, corrected,
   *  no answer), drawn by Chart.js from client_js/node_modules (npm install). */
  function drawCharts(by, rows) {
    const Chart = window.Chart;
    if (!Chart) { $("chartnote").textContent = "Charts need Chart.js: run npm install in client_js."; return; }
    const labels = rows.map((r) => r[`${by}_id`] ?? "(none)");
    const part = (k) => rows.map((r) => r[k] || 0);
    const unanswered = rows.map((r) => Math.max(0, (r.shown || 0) - (r.accepted || 0) - (r.dismissed || 0) - (r.corrected || 0)));
    const data = {
      labels,
      datasets: [
        { label: "accepted", data: part("accepted"), backgroundColor: "#2da44e" },
        { label: "corrected", data: part("corrected"), backgroundColor: "#1f6feb" },
        { label: "dismissed", data: part("dismissed"), backgroundColor: "#bf8700" },
        { label: "no answer", data: unanswered, backgroundColor: "#d0d7de" },
      ],
    };
    if (charts[by]) { charts[by].data = data; charts[by].update("none"); return; }
    charts[by] = new Chart($(`chart-${by}`), {
      type: "bar", data,
      options: { animation: false, responsive: true, indexAxis: "y", plugins: { legend: { position: "bottom", labels: { boxWidth: 10 } } },
                 scales: { x: { stacked: true, title: { display: true, text: "hints shown" }, ticks: { precision: 0 } }, y: { stacked: true } } },
    });
  }

  // ------------------------------------------------------------------ rendering

  const MOOD_MARK = { positive: "▲", neutral: "▬", negative: "▼" };
  let callsTimer = null;
  /** Signals arrive in bursts: redraw the calls table at most every 300 ms. */
  function scheduleCalls() {
    if (callsTimer) return;
    callsTimer = setTimeout(() => { callsTimer = null; renderCalls(); }, 300);
  }

  function duration(c) {
    const start = c.info.started_at;
    if (typeof start !== "number") return 0;
    const end = c.ended ? (c.info.ended_at || c.endedAt || Date.now() / 1000) : Date.now() / 1000;
    return Math.max(0, end - start);
  }

  const COLS = [
    ["call", "Call", (id) => id], ["agent", "Agent", (id, c) => c.info.agent_id || ""],
    ["duration", "Duration", (id, c) => duration(c)], ["mood", "Sentiment", (id, c) => c.moods.filter((m) => m === "negative").length],
    ["risk", "Risk", (id, c) => c.risks.size],
  ];

  /** Live and recent calls as a table: sortable by any column, filtered by text and risk. */
  function renderCalls() {
    const box = $("calls");
    box.replaceChildren();
    if (!state.calls.size) return box.append(el("p", "empty", "No calls yet."));
    const q = ($("callfilter").value || "").trim().toLowerCase();
    const riskOnly = $("riskonly").checked;
    const [key, dir] = state.sort;
    const col = COLS.find((c) => c[0] === key) || COLS[2];
    const rows = [...state.calls.entries()]
      .filter(([id, c]) => (!q || id.toLowerCase().includes(q) || String(c.info.agent_id || "").toLowerCase().includes(q))
                           && (!riskOnly || c.risks.size > 0))
      .sort((x, y) => { const a = col[2](...x), b = col[2](...y); return (a > b ? 1 : a < b ? -1 : 0) * dir; });
    const table = el("table", "calls");
    const head = el("tr");
    for (const [k, label] of COLS) {
      const th = el("th", k === key ? "sorted" : "");
      const b = button(`${label}${k === key ? (dir > 0 ? " ↑" : " ↓") : ""}`, "sort", () => {
        state.sort = [k, k === key ? -dir : (k === "duration" || k === "risk" || k === "mood" ? -1 : 1)];
        renderCalls();
      }, `sort by ${label.toLowerCase()}`);
      th.append(b);
      th.setAttribute("aria-sort", k === key ? (dir > 0 ? "ascending" : "descending") : "none");
      head.append(th);
    }
    const thead = el("thead");
    thead.append(head);
    const tb = el("tbody");
    for (const [id, c] of rows) {
      const tr = el("tr", (id === state.selected ? "sel " : "") + (c.risks.size ? "atrisk" : ""));
      const b = button(`${c.ended ? "■" : "●"} ${id.slice(0, 14)}`, c.ended ? "ended" : "",
                       () => select(id), `open call ${id} (${c.ended ? "ended" : "live"})`);
      b.dataset.callId = id;
      const td0 = el("td");
      td0.append(b);
      const moods = el("td", "moods");
      for (const m of c.moods.slice(-8)) moods.append(el("span", `m ${m}`, MOOD_MARK[m] || "·"));
      moods.title = c.moods.slice(-8).join(" → ") || "no sentiment yet";
      const dur = el("td", "dur num", fmtDur(duration(c)));
      dur.dataset.callId = id;
      const risk = el("td", c.risks.size ? "risk on" : "risk", c.risks.size ? `⚠ ${c.risks.size}` : "—");
      risk.title = [...c.risks].join(", ") || "no risk flags";
      tr.append(td0, el("td", "", c.info.agent_id || "—"), dur, moods, risk);
      tb.append(tr);
    }
    table.append(thead, tb);
    box.append(table);
    if (!rows.length) box.append(el("p", "empty", "No call matches the filter."));
  }

  function fmtDur(s) {
    const m = Math.floor(s / 60);
    return `${m}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  }

  function select(id) {
    state.selected = id;
    if (state.calls.get(id).ended) conn.openCall(id);
    renderCalls(); renderLines(); renderPlaybooks(); renderFeed(); loadTrail(); loadScorecard();
  }

  /** The post-call summary, each line with the call time of its evidence. */
  function summaryBlock(sm) {
    const d = el("div", "summary");
    const at = (ev) => (ev && ev.length && typeof ev[0].start === "number" ? ` @${fmtTime(ev[0].start)}` : "");
    const reasons = (sm.reason_for_contact || []).map((r) => `${r.intent.replace(/_/g, " ")}${at(r.evidence)}`).join(", ");
    d.append(el("div", "", `Reason: ${reasons || "not recognized"}`));
    d.append(el("div", "", `Outcome: ${sm.outcome ? sm.outcome.outcome : "?"}${sm.outcome ? at(sm.outcome.evidence) : ""}`));
    const did = (sm.agent_actions || []).slice(0, 6).map((x) => `${x.what.replace(/_/g, " ")}${x.at !== null ? " @" + fmtTime(x.at) : ""}`);
    if (did.length) d.append(el("div", "", `Agent: ${did.join(" · ")}`));
    const owed = (sm.follow_ups || []).map((x) => `${x.kind} ${x.value}`);
    if (owed.length) d.append(el("div", "", `Follow-up: ${owed.join(", ")}`));
    const q = (sm.sentiment_by_quarter || []).map((x) => x.label ? (MOOD_MARK[x.label] || "·") : "·").join(" ");
    const talk = Object.entries(sm.talk || {}).map(([ch, t]) => `${ch} ${Math.round(100 * (t.share || 0))}% (${t.words_per_minute || "–"} wpm)`);
    d.append(el("div", "", `Sentiment by quarter: ${q} · talk: ${talk.join(", ")} · silence ${sm.non_talk_s} s`));
    return d;
  }

  /** The selected call's QA scorecard: the latest evaluation (a review if there is one),
   *  each answer with its justification and the call time of its evidence; a lead can change
   *  answers with a reason (audited, re-scored; the automatic evaluation stays). */
  async function loadScorecard() {
    const id = state.selected;
    const box = $("scorecard");
    if (!id || !box) return;
    const r = await conn.request({ type: "get_scorecard", call_id: id });
    if (id !== state.selected) return;
    box.replaceChildren();
    const sm = r.type === "error" ? null : r.summary;
    if (sm) box.append(summaryBlock(sm));
    const evals = r.type === "error" ? [] : (r.evaluations || []);
    if (!evals.length) {
      box.append(el("p", "empty", state.calls.get(id) && state.calls.get(id).ended ? "Not scored yet." : "Scored when the call ends."));
      return;
    }
    const ev = evals[evals.length - 1];
    const head = el("div", "qahead");
    head.append(el("b", "qascore", ev.score === null || ev.score === undefined ? "–" : `${ev.score}`),
                document.createTextNode(` / 100 · ${ev.card_id} v${ev.card_version} · ${ev.source}`));
    if (ev.auto_failed) head.append(el("span", "qafail", ` auto-fail: ${ev.auto_failed.questions.join(", ")}`));
    box.append(head);
    const changes = {};
    for (const sec of ev.sections || []) {
      box.append(el("div", `qasec${sec.auto_failed ? " failed" : ""}`, `${sec.title}: ${sec.score ?? "N/A"}${sec.auto_failed ? " (auto-fail)" : ""}`));
      for (const a of (ev.answers || []).filter((x) => x.section_id === sec.id)) {
        const row = el("div", `qa ${a.answer}`);
        row.dataset.questionId = a.question_id;
        const when = (a.evidence || []).length ? ` @${fmtTime(a.evidence[0].start)}` : "";
        row.append(el("span", "qq", a.text), el("span", "qa-ans", `${a.answer}${when}`));
        row.title = a.justification || "";
        let change;
        if (a.options) {
          change = el("select", "qa-change");
          for (const opt of ["", ...a.options]) change.append(new Option(opt || "change…", opt));
        } else {
          change = el("input", "qa-change");
          change.type = "number";
          change.placeholder = "change…";
        }
        change.setAttribute("aria-label", `change answer: ${a.question_id}`);
        change.addEventListener("change", () => { if (change.value) changes[a.question_id] = change.value; else delete changes[a.question_id]; });
        row.append(change, el("div", "qj", a.justification || ""));
        box.append(row);
      }
    }
    const reason = el("input", "qa-reason");
    reason.placeholder = "reason for the changes (required)";
    reason.setAttribute("aria-label", "review reason");
    const save = button("Save review", "qa-save", async () => {
      if (!Object.keys(changes).length || !reason.value.trim()) return note("review: pick at least one answer and give a reason", false);
      const res = await conn.request({ type: "qa_review", call_id: id, card_id: ev.card_id, answers: changes, reason: reason.value.trim() });
      if (res.type === "error") return note(`review: ${res.message || res.code}`, false);
      note(`review saved: ${res.evaluation.score} (was ${ev.score})`, true);
      loadScorecard();
    });
    const form = el("div", "qaform");
    form.append(reason, save);
    box.append(form);
  }

  /** The selected call's decision trail, from the audit log (what fired, on which signals,
   *  under which playbook version, and what people did about it). */
  async function loadTrail() {
    const id = state.selected;
    if (!id) return;
    const r = await conn.request({ type: "audit_query", call_id: id, limit: 300 });
    if (id !== state.selected) return;
    const box = $("trail");
    box.replaceChildren();
    if (r.type === "error") return box.append(el("p", "empty", `trail: ${r.message || r.code}`));
    const entries = r.entries || [];
    if (!entries.length) return box.append(el("p", "empty", "Nothing decided on this call yet."));
    for (const e of entries.slice(-60).reverse()) {
      const p = e.payload || {};
      const li = el("li", `tr ${e.kind}`);
      li.dataset.kind = e.kind;
      const what = p.title || p.action || p.state || p.name || p.reason || "";
      li.append(el("span", "t", fmtClock(e.ts || e.created_at)), el("b", "", e.kind.replace(/_/g, " ")),
                document.createTextNode(` ${e.playbook_id ? e.playbook_id + (e.playbook_version ? " v" + e.playbook_version : "") : ""} ${what}`));
      box.append(li);
    }
  }

  // ------------------------------------------------------------------ recording playback
  // The recording comes over REST with the token as a Bearer header (never in a URL), as a
  // blob the <audio> element plays; clicking a line seeks to it, and the line being heard is
  // marked as the audio plays.
  let audioFor = null;
  let audioUrl = null;

  function player(callId) {
    const box = el("div", "player");
    const audio = el("audio", "");
    audio.id = "recording";
    audio.controls = true;
    audio.preload = "auto";
    box.append(audio, el("span", "empty", ""));
    loadRecording(callId, audio, box.lastChild);
    audio.addEventListener("timeupdate", () => {
      const t = audio.currentTime;
      for (const d of document.querySelectorAll("#lines .ln")) {
        d.classList.toggle("playing", Number(d.dataset.start) <= t && t < Number(d.dataset.end));
      }
    });
    return box;
  }

  async function loadRecording(callId, audio, note) {
    if (audioFor === callId && audioUrl) { audio.src = audioUrl; return; }
    try {
      const r = await fetch(`/api/v1/calls/${encodeURIComponent(callId)}/recording`, { headers: { Authorization: `Bearer ${state.token}` } });
      if (!r.ok) { note.textContent = r.status === 404 ? "no recording of this call" : `recording: HTTP ${r.status}`; return; }
      if (audioUrl) URL.revokeObjectURL(audioUrl);
      audioUrl = URL.createObjectURL(await r.blob());
      audioFor = callId;
      audio.src = audioUrl;
    } catch (e) {
      note.textContent = `recording: ${e.message}`;
    }
  }

  function playFrom(start) {
    const audio = $("recording");
    if (!audio || !audio.src) return;
    audio.currentTime = Math.max(0, start - 0.2);
    audio.play().catch(() => {});
  }

  function renderLines() {
    const box = $("lines");
    box.replaceChildren();
    const c = state.calls.get(state.selected);
    if (!c) return;
    box.append(el("h2", "", "Transcript"));
    const finals = [...c.finals.values()].sort((a, b) => a.start - b.start).slice(-40);
    if (!finals.length) box.append(el("p", "empty", "No final transcript yet."));
    if (c.ended) box.append(player(state.selected));
    for (const t of finals) {
      const d = el("div", `ln ${t.channel}`);
      d.dataset.start = String(t.start); d.dataset.end = String(t.end);
      d.append(el("span", "who", t.channel === "agent" ? "A" : "C"), document.createTextNode(t.text || ""));
      d.title = "play from here";
      d.addEventListener("click", () => playFrom(t.start));
      box.append(d);
    }
  }

  function describeAction(r) {
    const s = r.spec || {};
    const what = s.title || s.message || s.url || s.control || s.queue || s.role || "";
    return `${r.kind}${what ? ": " + what : ""}`;
  }

  function countdownText(deadline) {
    const left = Math.max(0, Number(deadline) - Date.now() / 1000);
    return left > 0 ? `${Math.ceil(left)} s left to decide` : "deadline passed";
  }

  function renderApprovals() {
    const box = $("approvals");
    box.replaceChildren();
    const open = [...state.approvals.values()].filter((a) => !a.result);
    $("approvalcount").textContent = open.length ? String(open.length) : "";
    if (!state.approvals.size) return box.append(el("p", "empty", "Nothing waiting for approval."));
    for (const [fid, a] of state.approvals) {
      const r = a.req;
      const card = el("div", "appr");
      card.dataset.firingId = fid;
      if (r.bot) {
        card.classList.add("bot");
        card.append(el("h4", "", `virtual agent ${String(r.flow || "").replace("@", " v")} · ${r.task}`));
        card.append(el("div", "meta", `call ${r.call_id} · the caller is holding${r.deadline_s ? ` · decide within ${r.deadline_s} s (then a person takes the call)` : ""}`));
      } else {
        card.append(el("h4", "", `${r.playbook_id} v${r.playbook_version}`));
        card.append(el("div", "meta", `call ${r.call_id} · agent ${r.agent_id || "?"}${r.deadline_s ? ` · decide within ${r.deadline_s} s` : ""}${r.on_expiry ? ` (then ${r.on_expiry})` : ""}`));
      }
      if (!a.result && r.deadline_at) {
        const cd = el("div", "countdown", countdownText(r.deadline_at));
        cd.dataset.deadline = String(r.deadline_at);
        card.append(cd);
      }
      for (const act of r.actions || []) card.append(el("div", "", `→ ${describeAction(act)}`));
      if (r.bot) {
        card.append(el("div", "", `→ ${r.kind}`));
        for (const [k, v] of Object.entries(r.slots || {})) card.append(el("div", "meta slot", `${k}: ${v}`));
      }
      if (r.why && r.why.when && r.why.when !== "True") card.append(el("div", "meta", `rule: ${r.why.when}`));
      const acts = el("div", "acts");
      if (a.result) {
        acts.append(el("span", "result", a.result));
      } else {
        const inp = el("input");
        inp.placeholder = "note / reason (optional)";
        inp.setAttribute("aria-label", "note or reason");
        inp.maxLength = 500;
        const ok = button("Approve", "approve", () => decide(a, "approve", inp.value.trim()));
        const no = button("Reject", "reject", () => decide(a, "reject", inp.value.trim()));
        ok.disabled = no.disabled = a.busy;
        acts.append(ok, no, inp);
      }
      card.append(acts);
      box.append(card);
    }
  }

  function renderPlaybooks() {
    const tb = $("playbooks").querySelector("tbody");
    tb.replaceChildren();
    const sel = state.selected && state.calls.has(state.selected) && !state.calls.get(state.selected).ended ? state.selected : null;
    for (const p of state.playbooks) {
      const onCall = sel && (p.paused_calls || []).includes(sel);
      const tr = el("tr", p.paused ? "paused" : "");
      tr.dataset.playbookId = p.id;
      const name = el("td");
      name.append(el("div", "pbid", p.id), el("div", "pbsub", `v${p.version} · ${p.autonomy}${p.description ? " · " + p.description : ""}`));
      const st = el("td");
      st.append(el("div", `state ${p.paused ? "off" : "on"}`, p.paused ? "PAUSED" : "active"));
      if ((p.paused_calls || []).length) st.append(el("div", "pbsub", `paused on ${p.paused_calls.length} call(s)`));
      const ctl = el("td");
      const btns = el("div", "btns");
      if (p.paused) {
        btns.append(button("Resume everywhere", "resume global", () => resume(p.id)));
      } else {
        const armed = state.armed === p.id;
        btns.append(button(armed ? "Confirm: stop it" : "Pause everywhere", `kill global${armed ? " armed" : ""}`, () => {
          if (state.armed === p.id) { disarm(); pause(p.id); } else arm(p.id);
        }, "Kill switch: no new firings anywhere; pending actions are cancelled"));
      }
      if (sel) {
        btns.append(onCall ? button("Resume on this call", "resume call", () => resume(p.id, sel))
                           : button("Pause on this call", "pause call", () => pause(p.id, sel), `Only call ${sel}`));
      }
      ctl.append(btns);
      tr.append(name, st, ctl);
      tb.append(tr);
    }
  }

  // The kill switch takes two clicks (arm, confirm within 4 s): one stray click must not
  // silence a playbook on every call.
  function arm(pid) {
    clearTimeout(state.armTimer);
    state.armed = pid;
    state.armTimer = setTimeout(disarm, 4000);
    renderPlaybooks();
  }

  function disarm() {
    clearTimeout(state.armTimer);
    state.armed = null;
    renderPlaybooks();
  }

  function fmtKpi(k, v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number" && /rate/.test(k)) return `${(v * 100).toFixed(0)}%`;
    if (typeof v === "number" && /_s$/.test(k)) return `${v.toFixed(1)} s`;
    return String(v);
  }

  function renderKpis(by, rows) {
    const cols = [`${by}_id`, "shown", "accepted", "dismissed", "corrected", "acceptance_rate", "time_to_accept_p50_s", "calls"];
    const label = { shown: "shown", accepted: "acc.", dismissed: "dism.", corrected: "corr.", acceptance_rate: "acc. rate",
                    time_to_accept_p50_s: "p50 to accept", calls: "calls" };
    const head = el("tr");
    for (const c of cols) {
      const th = el("th", c === `${by}_id` ? "" : "num", c === `${by}_id` ? by : label[c]);
      th.title = c;
      head.append(th);
    }
    $("kpis").querySelector("thead").replaceChildren(head);
    const tb = $("kpis").querySelector("tbody");
    tb.replaceChildren();
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "empty", "No hints shown yet.");
      td.colSpan = cols.length;
      tr.append(td);
      tb.append(tr);
    }
    for (const row of rows) {
      const tr = el("tr");
      for (const c of cols) tr.append(el("td", c === `${by}_id` ? "" : "num", fmtKpi(c, row[c] ?? (c === `${by}_id` ? "(none)" : null))));
      tb.append(tr);
    }
  }

  function feedText(ev) {
    switch (ev.type) {
      case "hint": return [ev.title, ev.source ? `(${ev.source})` : ""].join(" ");
      case "alert": return `${ev.severity || ""} ${ev.message || ""}`.trim();
      case "escalation": return `to ${[ev.role, ev.queue].filter(Boolean).join(" / ")}: ${ev.message || ""}`;
      case "action_update": return `${ev.playbook_id} ${ev.kind} ${ev.from} → ${ev.state} (${ev.actor})`;
      case "approval_request": return `${ev.playbook_id} asks for approval (${(ev.actions || []).map(describeAction).join(", ")})`;
      case "bot_approval_request": return `virtual agent ${String(ev.flow || "").replace("@", " v")} asks to ${ev.kind} (${ev.task})`;
      case "anomaly": return `${ev.playbook_id || ""} ${ev.metric || ev.kind || ""} ${ev.value ?? ""} ${ev.auto_paused ? "· auto-paused" : ""}`;
      case "playbook_paused": return `${ev.playbook_id} paused ${ev.call_id ? "on " + ev.call_id : "everywhere"} by ${ev.by}${ev.reason ? ": " + ev.reason : ""}`;
      case "playbook_resumed": return `${ev.playbook_id} resumed ${ev.call_id ? "on " + ev.call_id : "everywhere"} by ${ev.by}`;
      case "hint_retracted": return `hint ${ev.hint_id} retracted`;
      case "call_started": return `agent ${ev.agent_id || "?"} · ${ev.platform || ""}`;
      case "call_ended": return ev.reason || "";
      default: return "";
    }
  }

  const TAGS = { action_update: "action", approval_request: "approval", bot_approval_request: "approval", playbook_paused: "paused", playbook_resumed: "resumed",
                 hint_retracted: "retract", call_started: "call", call_ended: "call end" };

  function addFeed(ev) {
    if (ev.type === "action_update") {
      const prev = state.latest.get(ev.action_id);
      state.latest.set(ev.action_id, ev);
      if (prev) { renderFeed(); } // the older entry loses its control
    }
    // the event's own time (a replayed or late-joined event keeps when it happened), else now
    const at = [ev.emitted_at, ev.at, ev.created_at, ev.ts].find((t) => typeof t === "number" && t > 1e9) || Date.now() / 1000;
    state.feed.unshift({ ev, at });
    state.feed.sort((a, b) => b.at - a.at);
    if (state.feed.length > FEED_MAX) state.feed.length = FEED_MAX;
    const onlySel = $("feedfilter").value === "selected";
    if (!onlySel || ev.call_id === state.selected) {
      if (state.feed[0].ev !== ev) { renderFeed(); return; } // an older event: into its place
      const list = $("feed");
      list.prepend(feedItem(state.feed[0]));
      while (list.children.length > FEED_MAX) list.lastChild.remove();
    }
  }

  function feedItem({ ev, at }) {
    const li = el("li");
    li.dataset.type = ev.type;
    const tag = TAGS[ev.type] || ev.type;
    li.append(el("span", `tag ${ev.type === "approval_request" ? "approval" : tag.replace(" ", "-")}`, tag));
    const body = el("div");
    body.append(el("div", "", feedText(ev)));
    body.append(el("div", "meta", `${fmtClock(at)}${ev.call_id ? " · " + ev.call_id : ""}`));
    if (ev.type === "action_update") {
      li.dataset.actionId = ev.action_id;
      li.dataset.kind = ev.kind;
      li.dataset.state = ev.state;
      li.dataset.playbookId = ev.playbook_id;
      // alerts and escalations cannot be undone (docs/playbooks.md): offer no rollback for them
      const verb = ev.state === "succeeded" && NO_UNDO.has(ev.kind) ? null : UNDO_VERBS[ev.state];
      const note = state.actionNotes.get(ev.action_id);
      if (note && note.ev === ev) {
        const box = el("div", "acts");
        box.append(el("span", `meta ${note.ok ? "" : "err"}`, note.text));
        body.append(box);
      } else if (verb && state.latest.get(ev.action_id) === ev) {
        // only the newest update of an action offers a control: older ones describe the past
        body.append(actionControl(ev, verb));
      }
    }
    li.append(body);
    return li;
  }

  // what a supervisor can still do to an action in this state (docs/playbooks.md life cycle)
  const NO_UNDO = new Set(["alert", "escalate"]);
  const UNDO_VERBS = { succeeded: "rollback", pending_approval: "cancel", suggested: "cancel", approved: "cancel", dispatched: "cancel" };

  function actionControl(ev, verb) {
    const box = el("div", "acts");
    box.append(button(verb === "rollback" ? "Roll back" : "Cancel", verb === "rollback" ? "rollback" : "cancel", async () => {
      state.actionNotes.set(ev.action_id, { ok: true, text: `${verb}…`, ev });
      renderFeed();
      const r = await command({ type: verb, action_id: ev.action_id, reason: "from the supervisor console" });
      state.actionNotes.set(ev.action_id, r.type === "error" ? { ok: false, text: `${verb} refused: ${r.message || r.code}`, ev }
                                                              : { ok: true, text: `${verb === "rollback" ? "rolled back" : "cancelled"}: now ${r.action.state}`, ev });
      renderFeed();
    }, verb === "rollback" ? "Undo what this action did" : "Stop this action"));
    // override: replace the action with a note of the supervisor's own to the agent, or drop it
    const ov = button("Override", "override", () => {
      const inp = el("input", "override-text");
      inp.placeholder = "say this to the agent instead (empty: drop it)";
      inp.setAttribute("aria-label", "replacement hint");
      inp.maxLength = 300;
      const send = button("Send override", "send", async () => {
        const text = inp.value.trim();
        const action = text ? { kind: "hint", title: text, body: "From your supervisor", severity: "warning" } : null;
        state.actionNotes.set(ev.action_id, { ok: true, text: "override…", ev });
        renderFeed();
        const r = await command({ type: "override", action_id: ev.action_id, action, reason: "from the supervisor console" });
        state.actionNotes.set(ev.action_id, r.type === "error" ? { ok: false, text: `override refused: ${r.message || r.code}`, ev }
                                                                : { ok: true, text: r.replacement ? "overridden: replacement sent" : "overridden: dropped", ev });
        renderFeed();
      });
      inp.addEventListener("keydown", (e) => { if (e.key === "Enter") send.click(); if (e.key === "Escape") renderFeed(); });
      ov.replaceWith(inp, send);
      inp.focus();
    }, "Replace this action with your own words to the agent, or drop it");
    box.append(ov);
    return box;
  }

  function renderFeed() {
    const onlySel = $("feedfilter").value === "selected";
    $("feed").replaceChildren(...state.feed.filter((f) => !onlySel || f.ev.call_id === state.selected).map(feedItem));
  }

  // ------------------------------------------------------------------ start

  $("feedfilter").addEventListener("change", renderFeed);
  $("kpiby").addEventListener("change", loadKpis);
  $("kpirefresh").addEventListener("click", loadKpis);
  $("killall").addEventListener("click", async () => {
    const active = state.playbooks.filter((p) => !p.paused);
    if (!active.length) return note("every playbook is already paused", true);
    if (!confirm(`Pause all ${active.length} active playbooks on every call? Pending actions are cancelled.`)) return;
    for (const p of active) await command({ type: "pause_playbook", playbook_id: p.id, reason: "console: pause all" });
    note(`paused ${active.length} playbook(s) everywhere`, true);
    loadPlaybooks();
  });
  setInterval(() => { if (conn.open) loadKpis(); }, 15000);
  // once a second: approval countdowns and live call durations
  setInterval(() => {
    const now = Date.now() / 1000;
    for (const cd of document.querySelectorAll(".countdown")) {
      const left = Math.max(0, Number(cd.dataset.deadline) - now);
      cd.textContent = countdownText(Number(cd.dataset.deadline));
      cd.classList.toggle("urgent", left < 15);
    }
    // a bot approval nobody answered: the call went to a person; the card says so, then goes
    for (const [key, a] of state.approvals) {
      if (a.req.bot && !a.result && now > a.req.deadline_at) {
        a.result = "expired: handed to a person";
        renderApprovals();
        setTimeout(() => { state.approvals.delete(key); renderApprovals(); }, 8000);
      }
    }
    for (const td of document.querySelectorAll("#calls td.dur")) {
      const c = state.calls.get(td.dataset.callId);
      if (c && !c.ended) td.textContent = fmtDur(duration(c));
    }
  }, 1000);
  $("callfilter").addEventListener("input", renderCalls);
  $("riskonly").addEventListener("change", renderCalls);

  state.token = initialToken();
  $("token").value = state.token;
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("callcue.token", state.token);
    conn.start(state.token);
  });
  renderCalls();
  renderApprovals();
  if (state.token) conn.start(state.token);
})();
