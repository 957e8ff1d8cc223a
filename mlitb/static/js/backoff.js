// Retry delays: exponential backoff with jitter, so that many browsers that
// lost the same server do not all knock again in the same instant.

// The delay before retry number `attempt` (0 for the first retry), in ms:
// base × 2^attempt capped at maxMs, then scaled by a random factor in [0.5, 1].
export function retryDelayMs(attempt, { baseMs = 500, maxMs = 5000, random = Math.random } = {}) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.round(ceiling * (0.5 + 0.5 * random()));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
