// Real-browser check: the supervisor console shows the virtual agent's request for approval
// (the caller holding), and the Approve button answers it. tests/test_knowledge_browser.py
// starts the chat once this script says it is connected (the file CALLCUE_READY appears).
// Environment: CALLCUE_URL, CALLCUE_SUPERVISOR_TOKEN, CALLCUE_SHOTS, CALLCUE_READY, CHROMIUM.
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const env = (k, d) => { const v = process.env[k] ?? d; if (v === undefined) throw new Error(`${k} is required`); return v; };
const out = { errors: [] };
const browser = await chromium.launch({ executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.on("pageerror", (e) => out.errors.push(e.message));
  await page.goto(`${env("CALLCUE_URL")}/agent/supervisor.html#token=${encodeURIComponent(env("CALLCUE_SUPERVISOR_TOKEN"))}`);
  await page.waitForSelector("#status.ok", { timeout: 30000 });
  writeFileSync(env("CALLCUE_READY"), "ready");
  const card = page.locator("#approvals .appr.bot");
  await card.waitFor({ timeout: 60000 });
  out.title = await card.locator("h4").textContent();
  out.text = await card.textContent();
  out.countdown = await card.locator(".countdown").textContent();
  await page.screenshot({ path: join(env("CALLCUE_SHOTS"), "bot-approval.png"), fullPage: true });
  await card.locator("input").fill("checked the account");
  await card.getByRole("button", { name: "Approve" }).click();
  await card.locator(".result").waitFor({ timeout: 20000 });
  out.result = await card.locator(".result").textContent();
  out.feed = await page.locator("#feed").textContent();
} catch (e) {
  out.errors.push(`script: ${e.message}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
