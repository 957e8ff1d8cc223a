// Runs the engine benchmark inside a Web Worker, as the volunteers' trainers do:
// the CPU engines, then the WebGPU engine and its parity when there is an adapter.
import { measureAll, measureGpu, gpuParity } from "./measure.js";

self.onmessage = async ({ data }) => {
  try {
    const nets = await (await fetch("/bench/nets.json")).json();
    const result = await measureAll(nets, data.seconds);
    if (self.navigator?.gpu) {
      result.webgpu = await measureGpu(nets, data.seconds);
      const vectors = {};
      for (const name of data.vectors ?? []) vectors[name] = await (await fetch(`/tests/vectors/${name}`)).json();
      result.webgpuParity = await gpuParity(vectors);
    }
    self.postMessage(result);
  } catch (e) {
    self.postMessage({ error: String(e?.stack ?? e) });
  }
};
