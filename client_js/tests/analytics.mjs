// Real-browser check of the analytics page: KPI tiles, four Chart.js charts drawn, the topics
// list, "Make this an intent" on the first topic, and screenshots at 1280 and 380 px.
// Driven by tests/test_browser.py; prints one JSON result line on stdout.
// Environment: CALLCUE_URL, CALLCUE_SUPERVISOR_TOKEN, CALLCUE_SHOTS, CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { join } from "node:path";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`environment variable ${k} is required`);
  return v;
};
const BASE = env("CALLCUE_URL");
const SHOTS = env("CALLCUE_SHOTS");
const result = { event: "result", errors: [], layout: {} };

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  for (const width of [1280, 380]) {
    const ctx = await browser.newContext({ viewport: { width, height: 900 } });
    const page = await ctx.newPage();
    page.on("pageerror", (e) => result.errors.push(e.message));
    await page.goto(`${BASE}/agent/analytics.html#token=${encodeURIComponent(env("CALLCUE_SUPERVISOR_TOKEN"))}`);
    await page.waitForFunction(() => document.body.dataset.loaded === "1" || document.getElementById("status").className === "bad",
      null, { timeout: 30000 });
    const name = width === 1280 ? "analytics" : "analytics-380";
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
    result.layout[name] = await page.evaluate(() => ({ width: window.innerWidth, scroll_width: document.documentElement.scrollWidth }));
    if (width === 1280) {
      result.url_after_load = page.url();
      result.status = await page.textContent("#status");
      result.tiles = await page.$$eval(".tile", (ts) => Object.fromEntries(ts.map((t) => [t.dataset.kpi, t.querySelector(".v").textContent])));
      // a chart counts as drawn when Chart.js holds an instance with data for its canvas
      result.charts = await page.evaluate(() => Object.fromEntries(["chart-drivers", "chart-friction", "chart-trends", "chart-impact"].map((id) => {
        const c = window.Chart && window.Chart.getChart(id);
        return [id, c ? c.data.datasets.reduce((n, d) => n + d.data.filter((v) => v !== null && v !== undefined).length, 0) : 0];
      })));
      result.drivers = await page.$$eval("#drivers tbody tr", (rs) => rs.map((r) => r.cells[0].textContent));
      result.friction_rows = await page.$$eval("#friction tbody tr", (rs) => rs.length);
      result.topics = await page.$$eval(".topic", (ts) => ts.map((t) => ({ name: t.querySelector("h3").textContent, examples: t.querySelectorAll("li").length })));
      if (result.topics.length) {
        const first = page.locator(".topic").first();
        await first.locator("input").fill("exchange_rate");
        await first.locator("button").click();
        await first.locator(".result").filter({ hasText: /dataset v|error/ }).waitFor({ timeout: 15000 });
        result.adopted = await first.locator(".result").textContent();
      }
    }
    await ctx.close();
  }
  result.ok = true;
} catch (e) {
  result.ok = false;
  result.failure = String(e && e.stack || e);
} finally {
  await browser.close();
  process.stdout.write(JSON.stringify(result) + "\n");
}
