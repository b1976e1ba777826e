// Real-browser check: a call the virtual agent handed over shows on the agent desk with its
// context (tests/test_knowledge_browser.py posts the chat first; the desk is replayed it).
// Environment: CALLCUE_URL, CALLCUE_AGENT_TOKEN, CALLCUE_SHOTS, CHROMIUM. Prints one JSON object.
import { chromium } from "playwright-core";
import { join } from "node:path";

const env = (k, d) => { const v = process.env[k] ?? d; if (v === undefined) throw new Error(`${k} is required`); return v; };
const out = { errors: [] };
const browser = await chromium.launch({ executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.on("pageerror", (e) => out.errors.push(e.message));
  await page.goto(`${env("CALLCUE_URL")}/agent/agent.html#token=${encodeURIComponent(env("CALLCUE_AGENT_TOKEN"))}`);
  await page.waitForSelector("#status.ok", { timeout: 30000 });
  const card = page.locator("article.hint.handoff");
  await card.waitFor({ timeout: 20000 });
  out.title = await card.locator("h4").textContent();
  out.summary = await card.locator(".body").textContent();
  out.facts = await card.locator("dl.facts").textContent();
  out.bot_lines = await page.locator("#tr-agent .seg.final").count();
  await page.screenshot({ path: join(env("CALLCUE_SHOTS"), "handoff.png"), fullPage: true });
} catch (e) {
  out.errors.push(`script: ${e.message}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
