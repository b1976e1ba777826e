// Real-browser check of the connection handling shared by both pages (desk.js, on the library callcue.js): a page
// whose server goes away says so and reconnects with backoff once it is back; a bad token is
// refused once and never retried. Driven by tests/test_browser.py over stdout (JSON lines):
//   {"event":"ready"}    both pages loaded: the driver may stop the server now
//   {"event":"down"}     the agent page shows it lost the server: the driver restarts it
//   {"event":"result",...}
// Environment: CALLCUE_URL, CALLCUE_AGENT_TOKEN, CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const BASE = process.env.CALLCUE_URL;
const TOKEN = process.env.CALLCUE_AGENT_TOKEN;
if (!BASE || !TOKEN) throw new Error("CALLCUE_URL and CALLCUE_AGENT_TOKEN are required");
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const result = { event: "result", errors: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on("pageerror", (e) => result.errors.push(e.message));
  // count WebSocket attempts: a refused token must produce exactly one
  const sockets = { good: 0, bad: 0 };
  page.on("websocket", () => sockets.good++);
  await page.goto(`${BASE}/agent/agent.html?token=${encodeURIComponent(TOKEN)}`);
  await page.waitForSelector("#status.ok", { timeout: 15000 });
  result.first = await page.textContent("#status");

  const bad = await ctx.newPage();
  bad.on("websocket", () => sockets.bad++);
  await bad.goto(`${BASE}/agent/supervisor.html?token=not-a-token`);
  await bad.locator("#status", { hasText: "rejected" }).waitFor({ timeout: 15000 });
  result.bad_status = await bad.textContent("#status");
  emit({ event: "ready" });

  await page.locator("#status", { hasText: "retrying" }).waitFor({ timeout: 30000 });
  result.down = await page.textContent("#status");
  const downAt = Date.now();
  emit({ event: "down" });
  await page.waitForSelector("#status.ok", { timeout: 60000 });
  result.reconnected_after_s = (Date.now() - downAt) / 1000;
  result.again = await page.textContent("#status");
  result.bad_status_later = await bad.textContent("#status");
  result.sockets = sockets;
  // CALLCUE_CALLS: the driver played that many calls around the restart (one live while the
  // server went down): once all show ended, count each call's finals as the page shows them
  const want = Number(process.env.CALLCUE_CALLS || "0");
  if (want) {
    await page.waitForFunction((n) => document.querySelectorAll("#calls button.ended").length >= n, want, { timeout: 120000 });
    result.calls = {};
    for (const b of await page.locator("#calls button[data-call-id]").all()) {
      const id = await b.getAttribute("data-call-id");
      await b.click();
      await page.waitForTimeout(300);
      result.calls[id] = { finals: await page.locator(".seg.final").allTextContents() };
    }
  }
  result.ok = true;
} catch (e) {
  result.ok = false;
  result.failure = String(e && e.stack ? e.stack : e);
} finally {
  emit(result);
  await browser.close();
}
