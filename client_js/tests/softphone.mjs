// Real-browser check of the WebRTC softphone: Chromium's fake microphone plays a WAV, the
// page sends it to CallCue over WebRTC and shows the transcript and hints that come back.
// Driven by tests/test_webrtc.py; prints one JSON result line on stdout.
// Environment: CALLCUE_URL, CALLCUE_TOKEN, CALLCUE_WAV, CALLCUE_SHOTS, CALLCUE_WORD (a word the
// transcript must reach), CALLCUE_WAIT_MS, CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { join } from "node:path";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`environment variable ${k} is required`);
  return v;
};
const BASE = env("CALLCUE_URL");
const WAIT = Number(env("CALLCUE_WAIT_MS", "60000"));
const WORD = env("CALLCUE_WORD").toLowerCase();
const result = { event: "result", errors: [], steps: [] };
const step = (s) => { result.steps.push(s); process.stderr.write(`[softphone] ${s}\n`); };

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         `--use-file-for-fake-audio-capture=${env("CALLCUE_WAV")}`,
         "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required"],
});
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  await ctx.grantPermissions(["microphone"], { origin: BASE });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => result.errors.push(e.message));
  // the token goes in the fragment, which never leaves the browser; the page moves it out
  await page.goto(`${BASE}/agent/softphone.html#token=${encodeURIComponent(env("CALLCUE_TOKEN"))}`);
  result.url_after_load = page.url();
  await page.selectOption("#role", "customer");
  await page.click("#start");
  step("started");
  await page.waitForFunction(() => document.body.dataset.callId, null, { timeout: 20000 });
  result.call_id = await page.evaluate(() => document.body.dataset.callId);
  step(`in call ${result.call_id}`);
  await page.waitForFunction((w) => [...document.querySelectorAll("#tr .seg.final")].some((n) => n.textContent.toLowerCase().includes(w)),
                             WORD, { timeout: WAIT });
  step("transcript shown");
  await page.waitForSelector("#hints .hint", { timeout: WAIT });
  result.hints = await page.$$eval("#hints .hint h4", (ns) => ns.map((n) => n.textContent));
  result.transcript = await page.$$eval("#tr .seg.final", (ns) => ns.map((n) => n.textContent));
  result.status = await page.textContent("#status");
  await page.screenshot({ path: join(env("CALLCUE_SHOTS"), "softphone-1280.png") });
  await page.click("#hangup");
  await page.waitForFunction(() => document.querySelector("#status").textContent.includes("ended"), null, { timeout: 20000 });
  step("hung up");
} catch (e) {
  result.errors.push(String(e && e.stack || e));
} finally {
  await browser.close();
  process.stdout.write(JSON.stringify(result) + "\n");
}
