// Print what an agent desk is sent: finals and hints of every call the token may see.
//   CALLCUE_URL=ws://127.0.0.1:8080/ws/agent CALLCUE_TOKEN=demo-agent-token node print-events.mjs [--once]
// --once: exit when the first call ends (used by CallCue's own test of this example).
import { CallCueClient } from "callcue-client";

const cc = new CallCueClient({
  url: process.env.CALLCUE_URL || "ws://127.0.0.1:8080/ws/agent",
  token: process.env.CALLCUE_TOKEN || "demo-agent-token",
});
cc.on("status", (s) => console.log(`[connection] ${s.state}${s.protocol ? " " + s.protocol : ""}`));
cc.on("call_started", (c) => console.log(`[call] ${c.call_id} started (${c.platform})`));
cc.on("transcript", (t) => { if (t.is_final) console.log(`[${t.channel}] ${t.text}`); });
cc.on("hint", (h) => console.log(`[hint] ${h.title}: ${h.body}${h.suggested_reply ? `  say: "${h.suggested_reply}"` : ""}`));
cc.on("call_ended", (c) => {
  console.log(`[call] ${c.call_id} ended (${c.reason})`);
  if (process.argv.includes("--once")) cc.close();
});
await cc.connect();
const sub = await cc.subscribe("*", { history: true });
console.log(`[subscribed] ${sub.active_calls?.length ?? 0} live call(s), ${sub.recent_calls?.length ?? 0} recent`);
