// Real-browser check of the agent desktop and the supervisor console against a running
// CallCue server. Driven by tests/test_browser.py, which starts the server and streams a call;
// this script talks to it through stdout, one JSON object per line:
//   {"event":"ready"}      both pages are connected: start the call now
//   {"event":"live_done"}  everything that needs the call live is done: end the call now
//   {"event":"result",...} what the pages showed and did (the test asserts on it)
// Environment: CALLCUE_URL (http://127.0.0.1:port), CALLCUE_AGENT_TOKEN,
// CALLCUE_SUPERVISOR_TOKEN, CALLCUE_SHOTS (directory for screenshots), CALLCUE_KILL_PLAYBOOK
// (paused everywhere with the kill switch), CALLCUE_CALL_PLAYBOOK (paused on the call only),
// CALLCUE_DISMISS_TITLE (a hint title to dismiss with a reason), CALLCUE_XSS_MARK (text of a
// hint whose title carries markup that must stay text), CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { join } from "node:path";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`environment variable ${k} is required`);
  return v;
};
const BASE = env("CALLCUE_URL");
const AGENT_TOKEN = env("CALLCUE_AGENT_TOKEN");
const SUP_TOKEN = env("CALLCUE_SUPERVISOR_TOKEN");
const SHOTS = env("CALLCUE_SHOTS");
const KILL_PB = env("CALLCUE_KILL_PLAYBOOK");
const CALL_PB = env("CALLCUE_CALL_PLAYBOOK");
const DISMISS_TITLE = env("CALLCUE_DISMISS_TITLE", "");
const XSS_MARK = env("CALLCUE_XSS_MARK", "");
const WAIT = Number(env("CALLCUE_WAIT_MS", "60000"));

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const result = { event: "result", agent: {}, supervisor: {}, errors: [], steps: [] };
const step = (s) => { result.steps.push(s); process.stderr.write(`[e2e] ${s}\n`); };

function deferred() {
  let resolve;
  const p = new Promise((r) => { resolve = r; });
  return { p, resolve };
}

// launch() gives every run a fresh temporary profile of its own, removed on close
const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});

try {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const watch = (page, name) => {
    page.on("pageerror", (e) => result.errors.push(`${name}: ${e.message}`));
    page.on("console", (m) => { if (m.type() === "error") result.errors.push(`${name} console: ${m.text()}`); });
  };
  const agent = await ctx.newPage();
  const sup = await ctx.newPage();
  watch(agent, "agent");
  watch(sup, "supervisor");
  await agent.goto(`${BASE}/agent/agent.html?token=${encodeURIComponent(AGENT_TOKEN)}`);
  await sup.goto(`${BASE}/agent/supervisor.html?token=${encodeURIComponent(SUP_TOKEN)}`);
  await agent.waitForSelector("#status.ok", { timeout: 15000 });
  await sup.waitForSelector("#status.ok", { timeout: 15000 });
  result.agent.url_after_load = agent.url(); // the token must have been stripped from the address bar
  result.agent.status = await agent.textContent("#status");
  result.supervisor.status = await sup.textContent("#status");
  // Count every transcript node the page ever inserts: proof that partials were shown and
  // then replaced in place (one node per segment at the end, more insertions on the way).
  await agent.evaluate(() => {
    window.__seen = { partial: 0, final: 0 };
    new MutationObserver((muts) => {
      for (const m of muts) for (const n of m.addedNodes) {
        if (n.classList && n.classList.contains("partial")) window.__seen.partial++;
        if (n.classList && n.classList.contains("final")) window.__seen.final++;
      }
    }).observe(document.querySelector("main"), { childList: true, subtree: true });
  });
  step("pages connected");
  emit({ event: "ready" });

  const accepted = deferred();
  const agentDone = deferred(); // every feedback acked: the KPIs must count all of it

  async function agentFlow() {
    await agent.waitForSelector("#tr-customer .seg.final", { timeout: WAIT });
    step("agent: customer final shown");
    const card = agent.locator("article.hint:not(.knowledge)", { hasText: "Retention offer" }).first();
    await card.waitFor({ timeout: WAIT });
    result.agent.hint = {
      hint_id: await card.getAttribute("data-hint-id"),
      title: await card.locator("h4").textContent(),
      body: await card.locator(".body").textContent().catch(() => ""),
      reply: await card.locator(".reply").textContent().catch(() => ""),
    };
    step(`agent: hint card ${result.agent.hint.title}`);
    // a desk opened now, mid-call, must show the call so far (late join: replayed history)
    const before = await agent.locator("#tr-customer .seg.final").count();
    const late = await ctx.newPage();
    watch(late, "late agent");
    const opened = Date.now();
    await late.goto(`${BASE}/agent/agent.html#token=${encodeURIComponent(AGENT_TOKEN)}`);
    await late.waitForFunction((n) => document.querySelectorAll("#tr-customer .seg.final").length >= n, before, { timeout: 20000 });
    await late.locator("article.hint:not(.knowledge)", { hasText: "Retention offer" }).first().waitFor({ timeout: 20000 });
    result.late = { agent_finals_before: before, finals_shown: await late.locator("#tr-customer .seg.final").count(),
                    ms: Date.now() - opened, status: await late.textContent("#status") };
    step(`late desk: ${result.late.finals_shown} customer finals after ${result.late.ms} ms`);
    await late.close();
    await card.getByRole("button", { name: "Accept" }).click();
    await card.locator(".state.ok").waitFor({ timeout: 15000 });
    result.agent.accept_state = await card.locator(".state").textContent();
    step(`agent: ${result.agent.accept_state}`);
    accepted.resolve();
    if (XSS_MARK) {
      // a hint whose text carries markup (from a playbook) must show as text and run nothing
      const x = agent.locator("article.hint", { hasText: XSS_MARK }).first();
      await x.waitFor({ timeout: WAIT });
      result.agent.xss = { title: await x.locator("h4").textContent(), img_elements: await x.locator("img").count(),
                           script_ran: await agent.evaluate(() => window.__xss === 1) };
      step("agent: markup hint shown as text");
      // Correct: type what it really was, Enter sends
      await x.getByRole("button", { name: "Correct" }).click();
      await x.locator("input.correction").fill("billing question");
      await x.locator("input.correction").press("Enter");
      await x.locator(".state.ok").waitFor({ timeout: 15000 });
      result.agent.corrected = { hint_id: await x.getAttribute("data-hint-id"), state: await x.locator(".state").textContent() };
      step("agent: corrected the markup hint");
    }
    if (DISMISS_TITLE) {
      const other = agent.locator("article.hint", { hasText: DISMISS_TITLE }).first();
      await other.waitFor({ timeout: WAIT });
      await other.getByRole("button", { name: "Dismiss" }).click();
      await other.locator("select.reason").selectOption("already handled");
      await other.getByRole("button", { name: "Send" }).click();
      await other.locator(".state.ok").waitFor({ timeout: 15000 });
      result.agent.dismissed = { hint_id: await other.getAttribute("data-hint-id"), state: await other.locator(".state").textContent() };
      step(`agent: dismissed ${DISMISS_TITLE}`);
    }
    result.agent.customer_finals = await agent.locator("#tr-customer .seg.final").allTextContents();
    result.agent.agent_finals = await agent.locator("#tr-agent .seg.final").allTextContents();
    result.agent.partials_on_screen = await agent.locator(".seg.partial").count();
    result.agent.seen = await agent.evaluate(() => window.__seen);
    result.agent.chips = await agent.locator("#signals .chip").allTextContents();
    agentDone.resolve();
    await agent.screenshot({ path: join(SHOTS, "agent.png") });
  }

  async function supervisorFlow() {
    const callBtn = sup.locator("#calls button[data-call-id]").first();
    await callBtn.waitFor({ timeout: WAIT });
    result.supervisor.call_id = await callBtn.getAttribute("data-call-id");
    step(`supervisor: call listed ${result.supervisor.call_id}`);
    const appr = sup.locator(".appr").first();
    await appr.waitFor({ timeout: WAIT });
    result.supervisor.approval_text = await appr.textContent();
    await appr.locator("input").fill("ok from the browser test");
    await appr.getByRole("button", { name: "Approve" }).click();
    await appr.locator(".result", { hasText: "approved" }).waitFor({ timeout: 15000 });
    result.supervisor.approval_result = await appr.locator(".result").textContent();
    step(`supervisor: ${result.supervisor.approval_result}`);
    await sup.locator('#feed li[data-type="alert"]').first().waitFor({ timeout: 20000 });
    await sup.locator('#feed li[data-type="hint"]').first().waitFor({ timeout: WAIT });
    await accepted.p; // the kill switch must not cancel the suggestion the agent is about to accept
    // kill switch: two clicks (arm, confirm)
    const killRow = sup.locator(`#playbooks tr[data-playbook-id="${KILL_PB}"]`);
    await killRow.locator("button.kill").click();
    await killRow.getByRole("button", { name: "Confirm: stop it" }).click();
    await killRow.locator(".state.off").waitFor({ timeout: 15000 });
    step(`supervisor: ${KILL_PB} paused everywhere`);
    const callRow = sup.locator(`#playbooks tr[data-playbook-id="${CALL_PB}"]`);
    await callRow.getByRole("button", { name: "Pause on this call" }).click();
    await callRow.getByRole("button", { name: "Resume on this call" }).waitFor({ timeout: 15000 });
    step(`supervisor: ${CALL_PB} paused on the call`);
    // KPIs come over REST: once the agent's feedback is all acked, refresh until it shows
    await agentDone.p;
    const deadline = Date.now() + 15000;
    let kpiText = "";
    while (Date.now() < deadline) {
      await sup.click("#kpirefresh");
      await sup.waitForTimeout(500);
      kpiText = await sup.locator("#kpis tbody").textContent();
      if (/retention_offer/.test(kpiText)) break;
    }
    result.supervisor.kpi_headers = await sup.locator("#kpis thead th").allTextContents();
    result.supervisor.kpi_rows = await sup.locator("#kpis tbody tr").evaluateAll((rows) =>
      rows.map((r) => [...r.children].map((td) => td.textContent)));
    result.supervisor.playbook_states = await sup.locator("#playbooks tbody tr").evaluateAll((rows) =>
      rows.map((r) => ({ id: r.dataset.playbookId, state: r.querySelector(".state").textContent })));
    result.supervisor.message = await sup.textContent("#msg");
    result.supervisor.script_ran = await sup.evaluate(() => window.__xss === 1);
    if (XSS_MARK) {
      // roll back the approved hint from the feed: the agent's card must be struck through
      const item = sup.locator(`#feed li[data-type="action_update"][data-playbook-id="${KILL_PB}"][data-kind="hint"][data-state="succeeded"]`).first();
      await item.getByRole("button", { name: "Roll back" }).click();
      await item.locator(".meta", { hasText: "rolled back" }).waitFor({ timeout: 15000 });
      result.supervisor.rollback = await item.locator(".acts").textContent();
      step(`supervisor: ${result.supervisor.rollback}`);
    }
    result.supervisor.feed_imgs = await sup.locator("#feed img").count();
    await sup.screenshot({ path: join(SHOTS, "supervisor.png") });
  }

  await Promise.all([agentFlow(), supervisorFlow()]);
  if (XSS_MARK) {
    const gone = agent.locator("article.hint.retracted", { hasText: XSS_MARK });
    await gone.waitFor({ timeout: 15000 });
    result.agent.retracted_meta = await gone.locator(".meta").textContent();
  }
  result.supervisor.feed_types = await sup.locator("#feed li").evaluateAll((li) => li.map((x) => x.dataset.type));
  result.supervisor.feed_text = await sup.locator("#feed").textContent();
  emit({ event: "live_done" });
  await sup.locator("#calls button.ended").first().waitFor({ timeout: 30000 });
  await agent.locator("#calls button.ended").first().waitFor({ timeout: 30000 });
  result.supervisor.call_ended_shown = true;
  result.agent.call_ended_shown = true;
  result.supervisor.feed_types = await sup.locator("#feed li").evaluateAll((li) => li.map((x) => x.dataset.type));
  step("call ended on both pages");
  // pages opened after the call ended (a newcomer after `make demo`): the call is there, with its history
  const after = { agent: await ctx.newPage(), supervisor: await ctx.newPage() };
  watch(after.agent, "agent opened after the call");
  watch(after.supervisor, "supervisor opened after the call");
  await after.agent.goto(`${BASE}/agent/agent.html#token=${encodeURIComponent(AGENT_TOKEN)}`);
  await after.supervisor.goto(`${BASE}/agent/supervisor.html#token=${encodeURIComponent(SUP_TOKEN)}`);
  await after.agent.locator("#tr-customer .seg.final").first().waitFor({ timeout: 20000 });
  await after.supervisor.locator("#lines .ln").first().waitFor({ timeout: 20000 });
  await after.supervisor.locator("#trail li").first().waitFor({ timeout: 20000 });
  await after.supervisor.locator("#scorecard .qahead").waitFor({ timeout: 30000 });
  await after.supervisor.locator("#scorecard .summary").waitFor({ timeout: 30000 });
  result.scorecard = { head: await after.supervisor.locator("#scorecard .qahead").textContent(),
                       summary: await after.supervisor.locator("#scorecard .summary").textContent(),
                       rows: await after.supervisor.locator("#scorecard .qa").count() };
  await after.supervisor.setViewportSize({ width: 1280, height: 1000 });
  await after.supervisor.locator("#scorecard").scrollIntoViewIfNeeded();
  await after.supervisor.screenshot({ path: join(SHOTS, "supervisor-scorecard.png") });
  result.after = { agent_finals: await after.agent.locator(".seg.final").count(),
                   agent_hints: await after.agent.locator("article.hint").count(),
                   supervisor_lines: await after.supervisor.locator("#lines .ln").count(),
                   supervisor_trail: await after.supervisor.locator("#trail li").count(),
                   ended_listed: await after.agent.locator("#calls button.ended").count() };
  step(`pages opened after the call: ${JSON.stringify(result.after)}`);
  await after.agent.close();
  await after.supervisor.close();
  // both pages at a desktop and in a ~380 px CRM side panel: screenshots, and no sideways scroll
  result.layout = {};
  for (const [w, h] of [[1280, 720], [380, 720]]) {
    for (const [name, page] of [["agent", agent], ["supervisor", sup]]) {
      await page.setViewportSize({ width: w, height: h });
      await page.waitForTimeout(300);
      await page.screenshot({ path: join(SHOTS, `${name}-${w}.png`) });
      result.layout[`${name}-${w}`] = await page.evaluate(() => ({ scroll_width: document.documentElement.scrollWidth,
                                                                   width: window.innerWidth }));
    }
  }
  result.ok = true;
} catch (e) {
  result.ok = false;
  result.failure = String(e && e.stack ? e.stack : e);
  try {
    for (const [i, p] of browser.contexts()[0].pages().entries()) await p.screenshot({ path: join(SHOTS, `failure-${i}.png`) });
  } catch { /* best effort */ }
} finally {
  emit(result);
  await browser.close();
}
