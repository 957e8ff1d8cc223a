// This browser's volunteer id: made once, kept in localStorage, sent in every trainer's hello so the
// master credits this volunteer's accepted work across reloads and reconnects (docs/browser.md).

const KEY = "mlitb.volunteerId";

export function volunteerId(storage = globalThis.localStorage) {
  let id = storage?.getItem(KEY);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    id = `web-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
    storage?.setItem(KEY, id);
  }
  return id;
}
