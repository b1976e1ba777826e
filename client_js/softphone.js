// CallCue softphone: your microphone to the server over WebRTC (POST /webrtc/offer, Opus),
// your transcript and hints back over /ws/agent. The token goes in the Authorization header
// and the WebSocket subprotocol, never in a URL. Dependency-free like the other pages.
import { el, initialToken, Connection } from "./desk.js";

(() => {
  const $ = (id) => document.getElementById(id);
  let pc = null, location_ = null, stream = null, callId = null, meterTimer = null;
  const segs = new Map(); // channel:segment -> node

  const status = (text, ok) => { const s = $("status"); s.textContent = text; s.className = ok ? "ok" : "bad"; };
  const conn = new Connection({
    onEvent: (ev) => {
      if (ev.call_id !== callId) return;
      if (ev.type === "transcript") {
        const key = `${ev.channel}:${ev.segment_id}`;
        let node = segs.get(key);
        if (!node) { node = el("div"); segs.set(key, node); $("tr").append(node); }
        node.className = `seg ${ev.channel} ${ev.is_final ? "final" : "partial"}`;
        node.textContent = `${ev.channel}: ${ev.text}`;
      } else if (ev.type === "hint") {
        const card = el("div", "hint");
        card.append(el("h4", "", ev.title), el("div", "", ev.body || ""));
        if (ev.suggested_reply) card.append(el("div", "", `Say: ${ev.suggested_reply}`));
        $("hints").prepend(card);
      } else if (ev.type === "call_ended") {
        status("call ended", false);
      }
    },
    onStatus: () => {},
    onHello: () => callId && conn.openCall(callId),
  });

  function iceDone(peer) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => { if (peer.iceGatheringState === "complete") { peer.removeEventListener("icegatheringstatechange", check); resolve(); } };
      peer.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, 3000); // host candidates are enough on a LAN: do not wait for slow ones
    });
  }

  async function start() {
    const token = $("token").value || initialToken();
    if (!token) return status("enter a token", false);
    sessionStorage.setItem("callcue.token", token);
    $("start").disabled = true;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: false } });
      pc = new RTCPeerConnection({ iceServers: [] });
      stream.getAudioTracks().forEach((t) => pc.addTrack(t, stream));
      pc.onconnectionstatechange = () => {
        if (pc) status(`media ${pc.connectionState}`, pc.connectionState === "connected");
      };
      await pc.setLocalDescription(await pc.createOffer());
      await iceDone(pc);
      const body = { type: "offer", sdp: pc.localDescription.sdp, role: $("role").value };
      if ($("callid").value) body.call_id = $("callid").value;
      const r = await fetch("/webrtc/offer", { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
                                               body: JSON.stringify(body) });
      const answer = await r.json();
      if (!r.ok) throw new Error(answer.error || `HTTP ${r.status}`);
      callId = answer.call_id;
      location_ = answer.location;
      document.body.dataset.callId = callId;
      conn.start(token);
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      status(`in call ${callId}`, true);
      $("hangup").disabled = false;
      meter(stream);
    } catch (e) {
      status(`could not start: ${e.message}`, false);
      cleanup();
      $("start").disabled = false;
    }
  }

  function meter(s) {
    const ctx = new AudioContext();
    const an = ctx.createAnalyser();
    ctx.createMediaStreamSource(s).connect(an);
    const buf = new Float32Array(an.fftSize);
    meterTimer = setInterval(() => {
      an.getFloatTimeDomainData(buf);
      $("meter").value = Math.min(1, Math.sqrt(buf.reduce((a, x) => a + x * x, 0) / buf.length) * 4);
    }, 100);
  }

  function cleanup() {
    clearInterval(meterTimer);
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (pc) pc.close();
    pc = null; stream = null;
  }

  async function hangup() {
    $("hangup").disabled = true;
    const token = $("token").value || sessionStorage.getItem("callcue.token") || "";
    if (location_) await fetch(location_, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
    location_ = null;
    cleanup();
    $("start").disabled = false;
    status("call ended", false);
  }

  $("start").addEventListener("click", start);
  $("hangup").addEventListener("click", hangup);
  const t = initialToken();
  if (t) $("token").value = t;
})();
