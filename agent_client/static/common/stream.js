// stream.js: the live event stream (GET /api/events, a WebSocket) with resume.
//
//   import { EventStream } from "/common/stream.js";
//   const s = new EventStream({
//     onEvent: (msg) => ...,      // {seq, at, kind, data}: agent_state, offer, case, queue, stats...
//     onReset: (data) => ...,     // a fresh start or a gap: data.state is the state you may see;
//                                 // reload what you show from the API
//     onStatus: (status) => ...,  // "connecting" | "open" | "closed"
//   });
//   s.start(); ... s.stop();
//
// The socket signs in with the session cookie (same origin). The module keeps the last `seq` and
// the server's `stream` and reconnects after a drop with ?after=&stream= (backoff 0.5 s to 10 s),
// so every event follows exactly once; when the server cannot resume it sends `reset` and onReset
// runs. Heartbeats only move the position. Stable: other pages import this module.

export class EventStream {
  constructor({ onEvent = () => {}, onReset = () => {}, onStatus = () => {}, path = "/api/events" } = {}) {
    this.onEvent = onEvent;
    this.onReset = onReset;
    this.onStatus = onStatus;
    this.path = path;
    this.seq = null;
    this.stream = null;
    this.ws = null;
    this.stopped = true;
    this.delay = 500;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this._connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }

  _connect() {
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let url = `${scheme}://${location.host}${this.path}`;
    if (this.seq !== null && this.stream) {
      url += `?after=${this.seq}&stream=${encodeURIComponent(this.stream)}`;
    }
    this.onStatus("connecting");
    const ws = (this.ws = new WebSocket(url));
    ws.onopen = () => { this.delay = 500; this.onStatus("open"); };
    ws.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (typeof msg.seq === "number") this.seq = msg.seq;
      switch (msg.kind) {
        case "reset":
          if (msg.data && msg.data.stream) this.stream = msg.data.stream;
          this.onReset(msg.data || {});
          break;
        case "resumed": case "heartbeat": case "closing":
          break;
        default:
          this.onEvent(msg);
      }
    };
    ws.onclose = () => {
      if (this.ws === ws) this.ws = null;
      this.onStatus("closed");
      if (this.stopped) return;
      this.timer = setTimeout(() => this._connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    };
  }
}
