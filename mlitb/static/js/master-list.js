// The masters a browser client knows, and which to try next (several masters on one Redis,
// docs/deploy.md). It starts with the page's own master, learns the others from `moved` frames,
// follows `moved {url}` at once, and after a connection that failed before opening tries the next.
// Pure logic, no I/O: the twin of mlitb/worker/masters.py.

export function masterSocketUrl(origin) {
  const url = new URL("/ws", origin);
  url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:";
  return url.href;
}

export class MasterList {
  constructor(wsUrl) {
    this.current = wsUrl;
    this.known = [wsUrl];
  }

  learn(urls) {
    for (const url of urls ?? []) {
      if (typeof url !== "string" || !/^https?:\/\//.test(url)) continue;
      const ws = masterSocketUrl(url);
      if (!this.known.includes(ws)) this.known.push(ws);
    }
  }

  // Returns true when the owner is known (reconnect there now), false when it is not (back off).
  moved(url, masters) {
    this.learn(masters);
    if (typeof url === "string" && /^https?:\/\//.test(url)) {
      this.learn([url]);
      this.current = masterSocketUrl(url);
      return true;
    }
    this.failed();
    return false;
  }

  failed() {
    if (this.known.length > 1) this.current = this.known[(this.known.indexOf(this.current) + 1) % this.known.length];
  }
}
