// CX analytics page: drivers, friction, KPIs and emerging topics from /api/v1/analytics/*,
// charts drawn by Chart.js (installed from npm into client_js/node_modules, never copied here).
// Every node is built with textContent: utterances are customer text and never parsed as HTML.
import { initialToken } from "./desk.js";

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...kids) => {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") n.className = v; else if (k === "text") n.textContent = v; else n.setAttribute(k, v);
  }
  for (const k of kids) n.append(k);
  return n;
};
const pct = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)}%`);
const num = (x, d = 0) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
const PALETTE = ["#1f6feb", "#2da44e", "#bf8700", "#cf222e", "#8250df", "#1b7c83", "#d4663a", "#6e7781", "#a2c4f5", "#9be9a8"];
const charts = {};
let token = "";

async function api(path, opts = {}) {
  const r = await fetch(`/api/v1/analytics/${path}`, { ...opts, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error && body.error.message) || `HTTP ${r.status}`);
  return body;
}

function draw(id, config) {
  const Chart = window.Chart;
  if (!Chart) { $("status").textContent = "Charts need Chart.js: run npm install in client_js."; return; }
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart($(id), { ...config, options: { responsive: true, maintainAspectRatio: false, animation: false, ...config.options } });
}

function tiles(k) {
  const o = k.overall;
  const box = $("tiles");
  box.replaceChildren();
  const items = [["calls", num(o.calls)], ["handle time p50", o.handle_s_p50 === null ? "–" : `${num(o.handle_s_p50)} s`],
    ["first-contact resolution", pct(o.fcr_rate)], ["satisfaction (est.)", o.csat_estimate === null ? "–" : `${num(o.csat_estimate, 1)} / 5`],
    ["QA score", num(o.qa_score, 1)], ["resolved", pct(o.resolved_rate)], ["escalated", pct(o.escalated_rate)]];
  for (const [k2, v] of items) box.append(el("div", { class: "tile", "data-kpi": k2 }, el("div", { class: "v", text: v }), el("div", { class: "k", text: k2 })));
}

function drivers(d) {
  const tb = $("drivers").tBodies[0];
  tb.replaceChildren(...d.totals.map((t) => el("tr", {}, el("td", { text: t.driver }), el("td", { class: "num", text: String(t.calls) }),
    el("td", { class: "num", text: pct(t.share) }), el("td", { class: "num", text: t.trend === null || t.trend === undefined ? "–" : `${t.trend > 0 ? "+" : ""}${Math.round(t.trend * 100)} pt` }))));
  const names = d.totals.map((t) => t.driver);
  draw("chart-drivers", { type: "bar", data: { labels: d.groups.map((g) => g.key),
    datasets: names.map((n, i) => ({ label: n, data: d.groups.map((g) => g.drivers[n] || 0), backgroundColor: PALETTE[i % PALETTE.length] })) },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } } });
}

function friction(f) {
  const rows = f.groups.slice(0, 10);
  const tb = $("friction").tBodies[0];
  tb.replaceChildren(...rows.map((g) => el("tr", {}, el("td", { text: g.key }), ...[g.calls, g.repeat_contacts, g.transfers, g.escalations, g.long_holds, g.dead_air, g.negative_endings]
    .map((v) => el("td", { class: "num", text: String(v) })))));
  const parts = [["repeat_contacts", "repeat contacts"], ["transfers", "transfers"], ["escalations", "escalations"], ["long_holds", "long holds"], ["negative_endings", "negative endings"]];
  draw("chart-friction", { type: "bar", data: { labels: rows.map((g) => g.key),
    datasets: parts.map(([k, label], i) => ({ label, data: rows.map((g) => g[k] / Math.max(1, g.calls)), backgroundColor: PALETTE[i] })) },
    options: { indexAxis: "y", scales: { x: { stacked: true, title: { display: true, text: "per call" } }, y: { stacked: true } } } });
}

function trends(k) {
  const g = k.groups;
  draw("chart-trends", { type: "line", data: { labels: g.map((x) => x.key), datasets: [
    { label: "handle time p50 (s)", data: g.map((x) => x.handle_s_p50), borderColor: PALETTE[0], yAxisID: "s" },
    { label: "QA score", data: g.map((x) => x.qa_score), borderColor: PALETTE[1], yAxisID: "score" },
    { label: "satisfaction est. ×20", data: g.map((x) => (x.csat_estimate === null ? null : x.csat_estimate * 20)), borderColor: PALETTE[2], yAxisID: "score" },
    { label: "FCR %", data: g.map((x) => (x.fcr_rate === null ? null : x.fcr_rate * 100)), borderColor: PALETTE[4], yAxisID: "score" }] },
    options: { spanGaps: true, scales: { s: { position: "left", beginAtZero: true }, score: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false } } } } });
}

function impact(k) {
  const groups = ["accepted", "dismissed", "no_verdict", "none_shown"];
  const g = k.playbook_impact.groups;
  draw("chart-impact", { type: "bar", data: { labels: groups.map((x) => `${x.replace("_", " ")} (${g[x].calls})`), datasets: [
    { label: "resolved", data: groups.map((x) => g[x].resolved_rate), backgroundColor: PALETTE[1] },
    { label: "escalated", data: groups.map((x) => g[x].escalated_rate), backgroundColor: PALETTE[3] },
    { label: "churned", data: groups.map((x) => g[x].churned_rate), backgroundColor: PALETTE[7] }] },
    options: { scales: { y: { min: 0, max: 1, ticks: { callback: (v) => `${Math.round(v * 100)}%` } } } } });
}

function topics(t) {
  const box = $("topics");
  if (!t.topics.length) { box.replaceChildren(el("p", { class: "note", text: `No emerging topic among ${t.utterances} uncovered utterances.` })); return; }
  box.replaceChildren(...t.topics.map((tp) => {
    const name = el("input", { "aria-label": `intent name for ${tp.name}`, placeholder: "new_intent_name", value: tp.terms.length ? tp.terms[0].replace(/\W+/g, "_").toLowerCase() : "" });
    const result = el("span", { class: "result", role: "status" });
    const form = el("form", {}, name, el("button", { type: "submit", text: "Make this an intent" }), result);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      result.textContent = "saving…";
      try {
        const r = await api("topics/intent", { method: "POST", body: JSON.stringify({ intent: name.value.trim(), topic_id: tp.topic_id, utterance_ids: tp.utterance_ids }) });
        result.textContent = `dataset v${r.dataset ? r.dataset.version : "?"}: ${r.examples} examples of ${r.intent} (proposed; promote it to train on it)`;
      } catch (err) { result.textContent = `error: ${err.message}`; }
    });
    return el("div", { class: "topic", "data-topic": tp.topic_id },
      el("h3", { text: tp.name }),
      el("div", { class: "meta", text: `${tp.size} utterances in ${tp.calls} calls · cohesion ${num(tp.cohesion, 2)} · terms: ${tp.terms.join(", ")}` }),
      el("ul", {}, ...tp.examples.map((x) => el("li", { text: x.text }))), form);
  }));
}

async function load() {
  const days = $("days").value;
  const q = days ? `days=${days}` : "";
  $("status").className = "";
  $("status").textContent = "loading…";
  try {
    const [k, d, f, t] = await Promise.all([api(`kpis?${q}`), api(`drivers?by=day&${q}`), api(`friction?by=driver&${q}`), api(`topics?${q}`)]);
    tiles(k); drivers(d); friction(f); trends(k); impact(k); topics(t);
    $("status").textContent = `${k.overall.calls} calls · repeat window ${k.repeat_days} d`;
    document.body.dataset.loaded = "1";
  } catch (err) {
    $("status").className = "bad";
    $("status").textContent = `error: ${err.message}`;
  }
}

token = initialToken();
$("token").value = token;
$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("callcue.token", token);
  load();
});
if (token) load();
