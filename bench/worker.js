// Runs the engine benchmark inside a Web Worker, as the volunteers' trainers do.
import { measureAll } from "./measure.js";

self.onmessage = async ({ data }) => {
  try {
    const nets = await (await fetch("/bench/nets.json")).json();
    self.postMessage(await measureAll(nets, data.seconds));
  } catch (e) {
    self.postMessage({ error: String(e?.stack ?? e) });
  }
};
