// One WebSocket to the master speaking protocol v1 (docs/protocol.md):
// msgpack frames in and out, `hello` on every (re)connect, reconnects with backoff.

import { encode, decode } from "./msgpack.js";

export class MasterSocket {
  // hello(): the hello map to send on each connect; onMessage(message); onStatus(text)
  constructor(url, { hello, onMessage, onStatus = () => {} }) {
    this.url = url;
    this.hello = hello;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.closed = false;
    this.retryMs = 500;
    this.socket = null;
    this.connect();
  }

  connect() {
    const socket = new WebSocket(this.url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      this.retryMs = 500;
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
      if (message && typeof message.type === "string") this.onMessage(message);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closed) return;
      this.onStatus(this.fatal ? "refused" : "reconnecting", event.code);
      if (this.fatal) return;
      setTimeout(() => !this.closed && this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10_000);
    };
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

export function masterSocketUrl(origin) {
  const url = new URL("/ws", origin);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
