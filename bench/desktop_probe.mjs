// Browser side of bench/desktop.py: the agent desktop in headless Chromium, measured from
// inside the page. Protocol over stdin/stdout, one JSON object per line:
//   out {"event":"ready"}                  page connected: the driver may load the history
//   in  {"cmd":"loaded","segments":N}       wait until N transcript segments are on the page
//   out {"event":"loaded","ms":...}         ms from opening the page until it showed them
//   in  {"cmd":"sample","seconds":S}        sample frame times for S s (the driver streams meanwhile)
//   out {"event":"sampled","frames":[...ms],"hints":[{"id","emitted_at","painted_at"}],"long_tasks":[...ms]}
//   in  {"cmd":"shot","path":P}             screenshot
//   in  {"cmd":"quit"}
// Environment: CALLCUE_URL, CALLCUE_TOKEN, WIDTH, HEIGHT, CHROMIUM.
// playwright-core is installed for client_js (npm install there): import it from that folder
import { chromium } from "../client_js/node_modules/playwright-core/index.mjs";
import { createInterface } from "node:readline";

const BASE = process.env.CALLCUE_URL;
const TOKEN = process.env.CALLCUE_TOKEN;
const W = Number(process.env.WIDTH || "1280");
const H = Number(process.env.HEIGHT || "720");
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const page = await browser.newPage({ viewport: { width: W, height: H } });
page.on("pageerror", (e) => emit({ event: "error", message: e.message }));
// every hint card: when it was inserted and when the frame that shows it was painted
await page.addInitScript(() => {
  window.__hints = [];
  window.__longTasks = [];
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longTasks.push(e.duration); })
    .observe({ type: "longtask", buffered: true });
  const seen = new Set();
  const watch = () => new MutationObserver(() => {
    for (const card of document.querySelectorAll("article.hint")) {
      const id = card.dataset.hintId;
      if (seen.has(id)) continue;
      seen.add(id);
      const emitted = Number(card.dataset.emittedAt || 0);
      // the frame after the insertion is the one that paints it
      requestAnimationFrame(() => setTimeout(() => {
        window.__hints.push({ id, emitted_at: emitted, painted_at: (performance.timeOrigin + performance.now()) / 1000 });
      }, 0));
    }
  }).observe(document.body, { childList: true, subtree: true });
  if (document.body) watch(); else document.addEventListener("DOMContentLoaded", watch);
});
const opened = Date.now();
await page.goto(`${BASE}/agent/agent.html#token=${encodeURIComponent(TOKEN)}`);
await page.waitForSelector("#status.ok", { timeout: 20000 });
emit({ event: "ready" });

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const msg = JSON.parse(line);
  if (msg.cmd === "loaded") {
    // from opening the page: load, connect, replay of the stored call, render
    await page.waitForFunction((n) => document.querySelectorAll(".seg").length >= n, msg.segments, { timeout: 300000, polling: 50 });
    emit({ event: "loaded", ms: Date.now() - opened, segments: await page.locator(".seg").count() });
  } else if (msg.cmd === "sample") {
    const frames = await page.evaluate((seconds) => new Promise((resolve) => {
      const out = [];
      let last = performance.now();
      const end = last + seconds * 1000;
      const tick = (t) => {
        out.push(t - last);
        last = t;
        if (t < end) requestAnimationFrame(tick); else resolve(out);
      };
      requestAnimationFrame(tick);
    }), msg.seconds);
    const hints = await page.evaluate(() => window.__hints);
    const longTasks = await page.evaluate(() => window.__longTasks);
    emit({ event: "sampled", frames, hints, long_tasks: longTasks });
  } else if (msg.cmd === "shot") {
    await page.screenshot({ path: msg.path, fullPage: false });
    emit({ event: "shot", path: msg.path });
  } else if (msg.cmd === "quit") {
    break;
  }
}
rl.close();
await browser.close();
process.exit(0);
