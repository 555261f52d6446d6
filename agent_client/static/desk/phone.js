// The browser phone: one WebSocket to /ws/agent (media_gateway/webrtc.py) while the desk is
// open. The gateway offers calls ("incoming" with its SDP offer, PCMU), the page answers
// ("accept" with its SDP answer); "dtmf" sends a key on the media path. It signs in with the
// agent's id and SIP password (the same password as the desk's sign-in).
//
// `stats` (exposed as window.hotlineStats by desk.js) reports what getStats() sees.

function iceGathered(peer, ms) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    peer.addEventListener("icegatheringstatechange", () => {
      if (peer.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
    });
  });
}

export class BrowserPhone {
  constructor(audio, onChange) {
    this.audio = audio;
    this.onChange = onChange;
    this.ws = null;
    this.pc = null;
    this.mic = null;
    this.offer = null;
    this.timer = null;
    this.inbox = Promise.resolve();
    this.since = null;
    this.stats = { state: "none", packetsReceived: 0, audioLevel: 0, packetsSent: 0, codec: "", caller: "", error: "" };
  }

  _set(state) { this.stats.state = state; this.onChange(this); }

  login(agent, password) {
    if (this.ws) this.ws.close();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = (this.ws = new WebSocket(`${scheme}://${location.host}/ws/agent`));
    this._set("connecting");
    return new Promise((resolve) => {
      ws.onopen = () => ws.send(JSON.stringify({ type: "login", agent, password }));
      ws.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        if (msg.type === "logged_in") resolve(true);
        if (msg.type === "login_failed") resolve(false);
        this.inbox = this.inbox.then(() => this._message(msg)).catch((err) => { this.stats.error = String(err); });
      };
      ws.onclose = () => {
        if (this.ws === ws) this.ws = null;
        this._end();
        if (this.stats.state !== "failed" && this.stats.state !== "replaced") this._set("none");
        resolve(false);
      };
    });
  }

  logout() { if (this.ws) this.ws.close(); }

  get connected() { return this.ws !== null && this.stats.state !== "connecting"; }
  get ringing() { return this.offer !== null; }

  send(msg) { if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(msg)); }

  async _message(msg) {
    switch (msg.type) {
      case "logged_in": this._set("ready"); break;
      case "login_failed": this._set("failed"); break;
      case "replaced": this._set("replaced"); break;
      case "incoming":
        this.offer = msg.sdp;
        this.stats.caller = msg.caller || "";
        this._set("ringing");
        break;
      case "cancel": this._end(); this._set("ready"); break;
      case "connected": this.since = Date.now(); this._set("connected"); break;
      case "hold": this.onChange(this); break;
      case "hangup": this._end(); this._set("ready"); break;
      case "error": this.stats.error = msg.error; this.onChange(this); break;
    }
  }

  async accept() {
    if (!this.offer) return;
    const sdp = this.offer;
    this.offer = null;
    this._set("answering");
    try {
      this.mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
      const pc = (this.pc = new RTCPeerConnection({ iceServers: [] }));
      pc.ontrack = (e) => {
        this.audio.srcObject = e.streams[0] || new MediaStream([e.track]);
        this.audio.play().catch(() => {});
      };
      await pc.setRemoteDescription({ type: "offer", sdp });
      this.mic.getTracks().forEach((t) => pc.addTrack(t, this.mic));
      await pc.setLocalDescription(await pc.createAnswer());
      await iceGathered(pc, 3000);
      this.send({ type: "accept", sdp: pc.localDescription.sdp });
      this.timer = setInterval(() => this._stats(), 500);
    } catch (err) {
      this.stats.error = String(err);
      this.send({ type: "decline" });
      this._end();
      this._set("ready");
    }
  }

  decline() { this.send({ type: "decline" }); this._end(); this._set("ready"); }
  hangup() { this.send({ type: "hangup" }); this._end(); this._set("ready"); }
  dtmf(digit) { this.send({ type: "dtmf", digit }); }

  async _stats() {
    if (!this.pc) return;
    const report = await this.pc.getStats();
    report.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "audio") {
        this.stats.packetsReceived = r.packetsReceived || 0;
        this.stats.audioLevel = r.audioLevel || 0;
        const codec = r.codecId && report.get(r.codecId);
        if (codec) this.stats.codec = codec.mimeType;
      } else if (r.type === "outbound-rtp" && r.kind === "audio") {
        this.stats.packetsSent = r.packetsSent || 0;
      }
    });
  }

  _end() {
    if (this.timer) { clearInterval(this.timer); this.timer = null; }
    if (this.pc) { this.pc.close(); this.pc = null; }
    if (this.mic) { this.mic.getTracks().forEach((t) => t.stop()); this.mic = null; }
    this.offer = null;
  }
}
