// The client library against a real CallCue server (node's test runner).
//
// Starts `callcue serve` itself (CALLCUE_BIN, default ../.venv/bin/callcue) on a free port with
// its database under CALLCUE_TMP (a temporary folder: the tests leave nothing elsewhere), plays
// the shipped demo recording into it with `callcue play` as Twilio would, and checks what the
// library makes of it: negotiation, typed events, feedback recorded in the audit trail, a desk
// opened after the call, and a desk that rides out a server restart without losing or
// repeating an event. Run by tests/test_client_lib.py under `make test`.
import test from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { CallCueClient } from "../callcue.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, "..", "..");
const BIN = process.env.CALLCUE_BIN || join(REPO, ".venv", "bin", "callcue");
const WORK = process.env.CALLCUE_TMP || mkdtempSync(join(tmpdir(), "callcue-lib-"));
const DEMO = join(REPO, "server", "callcue", "data", "demo_call.wav");
const AGENT = "demo-agent-token";
const SUPERVISOR = "demo-supervisor-token";
const SPEED = Number(process.env.CALLCUE_PLAY_SPEED || "3");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

class Server {
  constructor(port) { this.port = port; this.http = `http://127.0.0.1:${port}`; this.ws = `ws://127.0.0.1:${port}/ws/agent`; }
  async start() {
    this.proc = spawn(BIN, ["serve", "--port", String(this.port), "--audiosocket-port", "0", "--storage-url", `sqlite:///${join(WORK, "lib.db")}`],
                      { cwd: WORK, stdio: ["ignore", "ignore", "pipe"] });
    this.log = "";
    this.proc.stderr.on("data", (d) => { this.log = (this.log + d).slice(-4000); });
    for (let i = 0; i < 400; i++) {
      if (this.proc.exitCode !== null) throw new Error(`server exited: ${this.log}`);
      try { if ((await fetch(`${this.http}/healthz`)).ok) return this; } catch {}
      await sleep(250);
    }
    throw new Error("server not ready");
  }
  async stop() {
    if (this.proc.exitCode !== null) return;
    const done = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGTERM");
    await done;
  }
}

/** `callcue play` of the demo call; resolves with its exit code and output. */
function play(server, callId) {
  const args = ["play", DEMO, "--url", server.http, "--speed", String(SPEED), "--call-id", callId, "--no-partials"];
  const p = spawn(BIN, args, { cwd: WORK, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  p.stdout.on("data", (d) => { out += d; });
  p.stderr.on("data", (d) => { out += d; });
  return new Promise((resolve) => p.on("exit", (code) => resolve({ code, out })));
}

function until(pred, ms = 60000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      const v = pred();
      if (v) return resolve(v);
      if (Date.now() - t0 > ms) return reject(new Error("timed out"));
      setTimeout(tick, 50);
    };
    tick();
  });
}

function desk(server, token = AGENT, o = {}) {
  const c = new CallCueClient({ url: server.ws, token, WebSocket, minRetryMs: 200, maxRetryMs: 1000, ...o });
  c.seen = [];
  c.on("event", (ev) => c.seen.push(ev));
  return c;
}

const numbered = (events, callId) => events.filter((e) => e.call_id === callId && typeof e.seq === "number");
const key = (e) => `${e.seq}:${e.type}:${e.text ?? ""}:${e.hint_id ?? ""}:${e.signal_id ?? ""}`;

let server;
test.before(async () => { server = await new Server(await freePort()).start(); });
test.after(async () => { if (server) await server.stop(); });

test("negotiates msgpack and falls back to JSON; the token never goes in the URL", async () => {
  const mp = desk(server);
  const hello = await mp.connect();
  assert.equal(hello.role, "agent");
  assert.equal(mp.protocol, "callcue.v1.msgpack");
  assert.equal((await mp.ping()).type, "pong");
  mp.close();
  const js = desk(server, AGENT, { format: "json", tokenInHeader: true });
  await js.connect();
  assert.equal(js.protocol, "callcue.v1.json");
  assert.ok(!js.url.includes(AGENT));
  js.close();
  const bad = desk(server, "not-a-token");
  await assert.rejects(bad.connect(), /rejected/);
  assert.equal(bad.state, "rejected");
});

test("typed events of a real call, and an accepted hint lands in the audit trail", async () => {
  const agent = desk(server);
  const sup = desk(server, SUPERVISOR);
  const hints = [];
  agent.on("hint", (h) => hints.push(h));
  await agent.connect();
  await sup.connect();
  await agent.subscribe("*", { history: true });
  await sup.subscribe("*");
  const played = await play(server, "lib-call-1");
  assert.equal(played.code, 0, played.out);
  assert.match(played.out, /^\d\d:\d\d\.\d .*final/m); // every line stamped with call time
  await until(() => agent.seen.some((e) => e.type === "call_ended" && e.call_id === "lib-call-1"));
  const finals = agent.seen.filter((e) => e.type === "transcript" && e.is_final);
  assert.ok(finals.length >= 5, `finals: ${finals.length}`);
  assert.ok(hints.length >= 1, "no hint");
  const ack = await agent.accept(hints[0].hint_id);
  assert.equal(ack.type, "feedback_ack");
  const audit = await sup.auditQuery({ call_id: "lib-call-1" });
  assert.ok(audit.entries.some((e) => e.payload?.action === "accepted" && e.payload?.hint_id === hints[0].hint_id),
            JSON.stringify(audit.entries.map((e) => e.kind)));
  const refused = await agent.approve("no-such-action");
  assert.equal(refused.type, "error"); // supervisor commands are refused for agents
  agent.close();
  sup.close();
});

test("a desk opened after the call lists it and is replayed all of it", async () => {
  const live = desk(server);
  await live.connect();
  await live.subscribe("*", { history: true });
  assert.equal((await play(server, "lib-call-2")).code, 0);
  await until(() => live.seen.some((e) => e.type === "call_ended" && e.call_id === "lib-call-2"));
  const late = desk(server);
  await late.connect();
  const all = await late.subscribe("*");
  assert.ok(all.recent_calls.some((c) => c.call_id === "lib-call-2"), JSON.stringify(all));
  const one = await late.subscribe("lib-call-2");
  assert.equal(one.ended, true);
  await until(() => late.seen.some((e) => e.type === "call_ended" && e.call_id === "lib-call-2"));
  assert.deepEqual(numbered(late.seen, "lib-call-2").map(key), numbered(live.seen, "lib-call-2").map(key));
  live.close();
  late.close();
});

test("a desk rides out a server restart mid-call: nothing lost, nothing twice", async () => {
  const d = desk(server);
  const states = [];
  d.on("status", (s) => states.push(s.state));
  await d.connect();
  await d.subscribe("*", { history: true });
  const first = play(server, "lib-call-3");
  await until(() => d.seen.some((e) => e.type === "transcript" && e.is_final && e.call_id === "lib-call-3"));
  await server.stop(); // mid-call: the server ends the call as it shuts down
  await first;
  server = await new Server(server.port).start();
  await until(() => d.state === "open" && states.includes("reconnecting"), 30000);
  assert.equal((await play(server, "lib-call-4")).code, 0);
  await until(() => d.seen.some((e) => e.type === "call_ended" && e.call_id === "lib-call-4"));
  await until(() => d.seen.some((e) => e.type === "call_ended" && e.call_id === "lib-call-3"));
  // the reference: what the server stored, read by a fresh desk
  const ref = desk(server);
  await ref.connect();
  for (const id of ["lib-call-3", "lib-call-4"]) {
    await ref.subscribe(id);
    await until(() => ref.seen.some((e) => e.type === "call_ended" && e.call_id === id));
    assert.deepEqual(numbered(d.seen, id).map(key), numbered(ref.seen, id).map(key), id);
  }
  assert.ok(numbered(d.seen, "lib-call-3").length >= 3);
  d.close();
  ref.close();
});
