// A trainer's side of the negotiated codecs and local steps (docs/protocol.md,
// "Codecs"): what it offers in `hello`, parameters in (full or delta frames),
// results out (through error feedback), and H local SGD steps returning
// (start − end) × count. Lives as long as one connection.

import { ErrorFeedback, ParamsReceiver, BaseMismatch, RESULT_CODECS, PARAM_CODECS, DEFAULT_TOPK_RATIO } from "./codecs.js";

export const OFFER = { results: RESULT_CODECS, params: PARAM_CODECS };

export class LinkCodecs {
  constructor(size, chosen = {}) {
    this.size = size;
    this.result = chosen.result ?? "f32";
    this.params = chosen.params ?? "f32";
    if (!RESULT_CODECS.includes(this.result) || !PARAM_CODECS.includes(this.params)) {
      throw new Error(`the master chose codecs this trainer does not know: ${this.result}, ${this.params}`);
    }
    this.localSteps = chosen.local_steps ?? 1;
    this.localLearningRate = chosen.local_learning_rate ?? 0.05;
    this.receiver = new ParamsReceiver(size);
    this.feedback = new ErrorFeedback(this.result, size, chosen.topk_ratio ?? DEFAULT_TOPK_RATIO);
    this.mismatches = 0;
  }

  // The parameters of a `params` message ({iteration, values}), or null when its delta does not apply.
  onParams(message) {
    try {
      const values = this.receiver.apply(message.iteration, message.codec ?? "f32", message.params, message.base ?? null);
      return { iteration: message.iteration, values };
    } catch (err) {
      if (!(err instanceof BaseMismatch)) throw err;
      this.mismatches++;
      return null;
    }
  }

  encodeResult(gradSum) {
    return { codec: this.result, grad: this.feedback.encode(gradSum) };
  }
}

// H steps of local SGD from `params` (left untouched); `part(w, h)` returns
// {gradSum, count, lossSum, correct} at w, or count 0 to stop early.
export async function runLocalSteps(part, params, steps, learningRate) {
  const start = Float32Array.from(params);
  const w = Float32Array.from(params);
  let count = 0, lossSum = 0, correct = 0;
  const lr = Math.fround(learningRate);
  for (let h = 0; h < steps; h++) {
    const r = await part(w, h);
    if (!r || r.count < 1) break;
    const n = Math.fround(r.count);
    for (let i = 0; i < w.length; i++) w[i] = w[i] - Math.fround(lr * Math.fround(r.gradSum[i] / n));
    count += r.count; lossSum += r.lossSum; correct += r.correct;
  }
  if (count === 0) throw new Error("no local step processed any example");
  const gradSum = new Float32Array(w.length);
  const c = Math.fround(count);
  for (let i = 0; i < w.length; i++) gradSum[i] = Math.fround(start[i] - w[i]) * c;
  return { gradSum, count, lossSum, correct, steps };
}
