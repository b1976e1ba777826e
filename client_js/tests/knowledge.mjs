// Real-browser check of the knowledge side of the agent desktop, against a running CallCue
// server that already handled a chat thread (tests/test_knowledge_browser.py posts it, so the
// desk joins late and is replayed the thread). Prints one JSON object: what the page showed.
// Environment: CALLCUE_URL, CALLCUE_AGENT_TOKEN, CALLCUE_SHOTS (screenshot folder), CHROMIUM.
import { chromium } from "playwright-core";
import { join } from "node:path";

const env = (k, d) => { const v = process.env[k] ?? d; if (v === undefined) throw new Error(`${k} is required`); return v; };
const BASE = env("CALLCUE_URL");
const TOKEN = env("CALLCUE_AGENT_TOKEN");
const SHOTS = env("CALLCUE_SHOTS");
const out = { errors: [], cards: [], replies: [], checklist: [], search: [] };

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => out.errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") out.errors.push(`console: ${m.text()}`); });
  await page.goto(`${BASE}/agent/agent.html#token=${encodeURIComponent(TOKEN)}`);
  await page.waitForSelector("#status.ok", { timeout: 30000 });
  await page.waitForSelector("article.hint.knowledge", { timeout: 30000 });
  for (const card of await page.locator("article.hint.knowledge").all()) {
    out.cards.push({
      hint_id: await card.getAttribute("data-hint-id"),
      title: (await card.locator("h4").textContent()).trim(),
      section: await card.locator(".section").textContent().catch(() => ""),
      marked: await card.locator(".passage mark").textContent().catch(() => ""),
      link: await card.locator("a.article").getAttribute("href").catch(() => null),
      meta: await card.locator(".meta").textContent(),
      why: await card.locator(".whyline").textContent().catch(() => ""),
    });
  }
  await page.waitForSelector("#replies .replyrow", { timeout: 30000 });
  for (const row of await page.locator("#replies .replyrow").all()) {
    out.replies.push({ id: await row.getAttribute("data-reply-id"), text: await row.locator(".text").textContent() });
  }
  for (const li of await page.locator("#checklist li").all()) {
    out.checklist.push({ item: await li.getAttribute("data-item"), done: (await li.getAttribute("class")) === "done" });
  }
  await page.screenshot({ path: join(SHOTS, "knowledge-1280.png"), fullPage: true });
  // the agent's verdict on the first card, with the keyboard-free path: its button
  const firstId = await page.locator("article.hint.knowledge").first().getAttribute("data-hint-id");
  const first = page.locator(`article[data-hint-id="${firstId}"]`);  // it moves down once done
  await first.getByRole("button", { name: "Useful", exact: true }).click();
  await first.locator(".state.ok").waitFor({ timeout: 30000 });
  out.useful_state = await first.locator(".state").textContent();
  out.useful_hint = firstId;
  // copy the top reply: clipboard, and the server is told it was used
  const copy = page.locator("#replies .replyrow").first().getByRole("button", { name: "Copy", exact: true });
  await copy.click();
  await page.waitForFunction(() => document.querySelector("#replies .replyrow button.copy")?.textContent === "Copied", null, { timeout: 5000 });
  out.clipboard = await page.evaluate(() => navigator.clipboard.readText());
  // the supervisor console's knowledge table counts that verdict
  const sup = await ctx.newPage();
  sup.on("pageerror", (e) => out.errors.push(`supervisor: ${e.message}`));
  await sup.goto(`${BASE}/agent/supervisor.html#token=${encodeURIComponent(env("CALLCUE_SUPERVISOR_TOKEN"))}`);
  await sup.waitForSelector("#status.ok", { timeout: 30000 });
  await sup.waitForFunction(() => [...document.querySelectorAll("#kbreport tbody tr")].some((tr) => tr.children.length === 5), null, { timeout: 30000 });
  out.report = await sup.$$eval("#kbreport tbody tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  await sup.close();
  // the agent's own search
  await page.fill("#kbq", "how long for a replacement card");
  await page.click("#kbsearch button");
  await page.waitForSelector("#kbresults .kbres", { timeout: 30000 });
  for (const r of await page.locator("#kbresults .kbres").all()) out.search.push((await r.locator("b").textContent()).trim());
  await page.setViewportSize({ width: 380, height: 800 });
  await page.screenshot({ path: join(SHOTS, "knowledge-380.png"), fullPage: true });
  out.sideways = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
} catch (e) {
  out.errors.push(`script: ${e.message}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
