// The boss (MLitB's structure): on the page's main thread, it starts and stops
// the data worker, the trainer workers and the tracker, wires each of them to
// the data worker with a MessageChannel, and keeps the figures the page shows.
// All computation happens in the workers.

import { volunteerId } from "./volunteer-id.js";
import { masterSocketUrl } from "./master-socket.js";

const workerUrl = (name) => new URL(`./workers/${name}.js`, import.meta.url);
const RATE_WINDOW_MS = 15_000;

export function defaultTrainerCount() {
  return Math.max(1, (navigator.hardwareConcurrency || 2) - 1);
}

export class Boss extends EventTarget {
  // project: {id, layers, dataset}; track: run the stats worker too
  // engine: "auto" (calibrated), or the volunteer's "webgpu", "wasm" or "js"
  // predict: the trainers also answer the project's prediction requests, between their results
  constructor(project, { trainers = defaultTrainerCount(), track = false, simd = true, engine = "auto", predict = true } = {}) {
    super();
    this.project = project;
    this.datasetId = typeof project.dataset === "string" ? project.dataset : project.dataset?.id;
    this.wanted = trainers;
    this.track = track;
    this.simd = simd;
    this.engine = engine;
    this.predict = predict;
    this.trainers = [];
    this.tracker = null;
    this.data = null;
    this.cachedIds = [];
    this.download = { downloading: 0, downloaded: 0, bytes: 0, fromCache: 0, cached: 0, failed: 0, cacheBytes: 0, dataError: null };
    this.evals = [];
    this.errors = [];
    this.running = false;
    this.nextIndex = 0;
    this.onVisibility = () => this.broadcast({ type: "hidden", hidden: document.hidden });
    this.onPageHide = () => this.stop();
  }

  async start() {
    if (this.running) return;
    this.running = true;
    this.data = new Worker(workerUrl("data"), { type: "module", name: "mlitb data" });
    const listed = new Promise((resolve) => {
      this.data.onmessage = ({ data }) => {
        if (data.type === "list") resolve(data.ids);
        else if (data.type === "progress") {
          this.download = data;
          this.changed();
        }
      };
    });
    this.data.postMessage({ type: "list", dataset: this.datasetId });
    this.cachedIds = await listed;
    if (!this.running) return;
    document.addEventListener("visibilitychange", this.onVisibility);
    window.addEventListener("pagehide", this.onPageHide);
    this.setTrainerCount(this.wanted);
    if (this.track) this.startTracker();
    this.changed();
  }

  setTrainerCount(n) {
    this.wanted = Math.max(0, Math.min(64, Math.floor(n)));
    if (!this.running || !this.data) return;
    while (this.trainers.length < this.wanted) this.trainers.push(this.startTrainer());
    while (this.trainers.length > this.wanted) this.stopWorker(this.trainers.pop());
    this.changed();
  }

  connectToData() {
    const channel = new MessageChannel();
    this.data.postMessage({ type: "connect", port: channel.port1 }, [channel.port1]);
    return channel.port2;
  }

  startTrainer() {
    const index = this.nextIndex++;
    const worker = new Worker(workerUrl("trainer"), { type: "module", name: `mlitb trainer ${index}` });
    const trainer = { index, worker, state: "starting", detail: "", clientId: null, clientIds: [], reconnects: 0, engine: null, iterations: 0, examples: 0, cached: 0, recent: [], lastError: null };
    worker.onmessage = ({ data }) => this.onTrainerMessage(trainer, data);
    worker.onerror = (event) => {
      trainer.state = "failed";
      trainer.lastError = event.message;
      this.changed();
    };
    const port = this.connectToData();
    worker.postMessage(
      {
        type: "start",
        index,
        wsUrl: masterSocketUrl(location.origin),
        project: this.project.id,
        layers: this.project.layers,
        dataPort: port,
        cached: this.cachedIds,
        hidden: document.hidden,
        simd: this.simd,
        engine: this.engine,
        predict: this.predict,
        cores: navigator.hardwareConcurrency || 1,
        agent: navigator.userAgent.slice(0, 200),
        volunteer: volunteerId(),
      },
      [port],
    );
    return trainer;
  }

  onTrainerMessage(trainer, message) {
    switch (message.type) {
      case "state":
        if (message.state === "reconnecting" && trainer.state !== "reconnecting") trainer.reconnects++;
        trainer.state = message.state;
        trainer.detail = message.detail;
        break;
      case "welcome":
        // a new id on each (re)connect; the page adds up what each of them had accepted
        trainer.clientId = message.clientId;
        if (!trainer.clientIds.includes(message.clientId)) trainer.clientIds.push(message.clientId);
        trainer.engine = message.engine;
        break;
      case "engine":
        trainer.engine = message.engine;
        trainer.engineDetail = message.detail;
        if (message.adapter !== undefined) Object.assign(trainer, { adapter: message.adapter, calibrated: message.examplesPerSecond });
        break;
      case "cached":
        trainer.cached = message.count;
        break;
      case "result":
        trainer.iterations++;
        trainer.examples += message.count;
        trainer.recent.push({ at: performance.now(), count: message.count, ms: message.computeMs });
        trainer.recent = trainer.recent.filter((r) => r.at > performance.now() - RATE_WINDOW_MS);
        break;
      case "error":
        trainer.lastError = message.message;
        this.errors.push({ at: Date.now(), ...message });
        break;
    }
    this.changed();
  }

  startTracker() {
    const worker = new Worker(workerUrl("stats"), { type: "module", name: "mlitb tracker" });
    const port = this.connectToData();
    worker.onmessage = ({ data }) => {
      if (data.type === "eval") {
        this.evals.push(data);
        this.dispatchEvent(new CustomEvent("eval", { detail: data }));
      }
    };
    worker.postMessage({ type: "start", wsUrl: masterSocketUrl(location.origin), project: this.project.id, dataPort: port, simd: this.simd }, [port]);
    this.tracker = { worker };
  }

  stopWorker(entry) {
    entry.worker.postMessage({ type: "stop" });
    setTimeout(() => entry.worker.terminate(), 1000);
  }

  broadcast(message) {
    for (const trainer of this.trainers) trainer.worker.postMessage(message);
  }

  stop() {
    if (!this.running) return;
    this.running = false;
    document.removeEventListener("visibilitychange", this.onVisibility);
    window.removeEventListener("pagehide", this.onPageHide);
    for (const trainer of this.trainers) this.stopWorker(trainer);
    if (this.tracker) this.stopWorker(this.tracker);
    this.data?.terminate();
    this.trainers = [];
    this.tracker = null;
    this.data = null;
    this.changed();
  }

  // Examples per second of computing, per trainer, over the last few seconds;
  // 0 unless it is training now (a paused or waiting trainer computes nothing).
  static rate(trainer, now = performance.now()) {
    if (trainer.state !== "training") return 0;
    const recent = trainer.recent.filter((r) => r.at > now - RATE_WINDOW_MS);
    const ms = recent.reduce((t, r) => t + r.ms, 0);
    return ms > 0 ? (1000 * recent.reduce((n, r) => n + r.count, 0)) / ms : 0;
  }

  figures() {
    const trainers = this.trainers.map((t) => ({ ...t, examplesPerS: Boss.rate(t) }));
    const states = new Set(trainers.map((t) => t.state));
    const state = !this.running ? "stopped"
      : states.has("training") ? "training"
      : states.has("reconnecting") ? "reconnecting"
      : states.has("downloading") || this.download.downloading > 0 ? "downloading data"
      : states.has("paused") ? "paused"
      : states.has("connecting") || states.has("starting") ? "connecting"
      : "waiting";
    return {
      state,
      trainers,
      examplesPerS: trainers.reduce((n, t) => n + t.examplesPerS, 0),
      iterations: trainers.reduce((n, t) => n + t.iterations, 0),
      examples: trainers.reduce((n, t) => n + t.examples, 0),
      shardsCached: this.download.cached,
      reconnects: trainers.reduce((n, t) => n + t.reconnects, 0),
      download: this.download,
    };
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }
}
