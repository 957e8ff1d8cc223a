// What this browser contributed, over every visit: kept in localStorage so a
// reload does not reset it. (Per-volunteer credit counted by the master comes
// later; this is the browser's own tally.) The boss's figures are per session
// and drop when a trainer is removed, so the tally adds only increases.

const FIELDS = ["iterations", "examples", "accepted"];
const zeros = () => Object.fromEntries(FIELDS.map((k) => [k, 0]));

export class Tally {
  constructor(storage, key = "mlitb.volunteer.tally") {
    this.storage = storage;
    this.key = key;
    this.totals = this.load();
    this.last = zeros();
  }

  load() {
    try {
      const saved = JSON.parse(this.storage.getItem(this.key) || "{}");
      return Object.fromEntries(FIELDS.map((k) => [k, Number.isFinite(saved[k]) && saved[k] >= 0 ? saved[k] : 0]));
    } catch {
      return zeros();
    }
  }

  // The session's current figures {iterations, examples, accepted}; returns the totals.
  update(session) {
    let changed = false;
    for (const k of FIELDS) {
      const now = Number(session[k]) || 0;
      if (now > this.last[k]) {
        this.totals[k] += now - this.last[k];
        changed = true;
      }
      this.last[k] = now;
    }
    if (changed) this.save();
    return { ...this.totals };
  }

  // A new session (a new boss) starts counting from zero.
  endSession() {
    this.last = zeros();
  }

  save() {
    try {
      this.storage.setItem(this.key, JSON.stringify(this.totals));
    } catch {
      /* storage full or disabled: the figures are still shown */
    }
  }
}
