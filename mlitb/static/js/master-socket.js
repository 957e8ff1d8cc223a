// One WebSocket to the master speaking protocol v1 (docs/protocol.md):
// msgpack frames in and out, `hello` on every (re)connect, reconnects with
// backoff (half a second at first, at most 5 s apart, jittered) for as long as
// it takes: a restarted master finds its browsers back by itself. With several masters
// (docs/deploy.md) it follows `moved` to the project's owner at once and, when its master
// vanishes, tries the other masters it knows (master-list.js).

import { encode, decode } from "./msgpack.js";
import { retryDelayMs } from "./backoff.js";
import { MasterList, masterSocketUrl } from "./master-list.js";

export { masterSocketUrl };

const RETRY = { baseMs: 500, maxMs: 5000 };

export class MasterSocket {
  // hello(): the hello map to send on each connect; onMessage(message);
  // onStatus(status, {code, retryInMs, attempt}): "connected", "reconnecting" or "refused"
  constructor(url, { hello, onMessage, onStatus = () => {} }) {
    this.url = url;
    this.masters = new MasterList(url);
    this.followNow = false; // a `moved` named the owner: reconnect there without waiting
    this.hello = hello;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.closed = false;
    this.attempt = 0;
    this.socket = null;
    this.connect();
  }

  connect() {
    this.url = this.masters.current;
    const socket = new WebSocket(this.url);
    let opened = false;
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.learnMasters(socket.url);
      this.send(this.hello());
      this.onStatus("connected");
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") return;
      let message;
      try {
        message = decode(new Uint8Array(event.data));
      } catch {
        return;
      }
      if (message?.type === "moved") {
        this.followNow = this.masters.moved(message.url, message.masters);
        return; // the master closes the socket next; onclose reconnects to the new URL
      }
      if (message && typeof message.type === "string") this.onMessage(message);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closed) return;
      if (this.fatal) {
        this.onStatus("refused", { code: event.code });
        return;
      }
      if (this.followNow) {
        this.followNow = false;
        this.onStatus("reconnecting", { code: event.code, retryInMs: 0, attempt: this.attempt });
        this.connect();
        return;
      }
      if (!opened) this.masters.failed(); // unreachable: the next attempt tries another master
      const retryInMs = retryDelayMs(this.attempt++, RETRY);
      this.onStatus("reconnecting", { code: event.code, retryInMs, attempt: this.attempt });
      setTimeout(() => !this.closed && this.connect(), retryInMs);
    };
  }

  // The other masters of a tier (GET /api/masters), to fail over to when this one vanishes. Only the
  // page's own origin answers it (the API sends no CORS headers); elsewhere it just fails quietly.
  learnMasters(wsUrl) {
    const url = new URL("/api/masters", wsUrl.replace(/^ws/, "http"));
    if (typeof location !== "undefined" && url.origin !== location.origin) return;
    fetch(url).then((r) => (r.ok ? r.json() : [])).then((masters) => {
      this.masters.learn(masters.map((m) => m?.url));
    }).catch(() => {});
  }

  get open() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  send(message) {
    if (!this.open) return false;
    this.socket.send(encode(message));
    return true;
  }

  // The master refused us for good (a fatal error other than a transient one): stop reconnecting.
  refuse() {
    this.fatal = true;
  }

  close() {
    this.closed = true;
    this.socket?.close(1000, "bye");
    this.socket = null;
  }
}
