// A project's metric history as CSV: one row per iteration, one column per
// field the records carry (first seen first), empty where a record has none.

const cell = (value) => {
  if (value === null || value === undefined) return "";
  const text = typeof value === "object" ? JSON.stringify(value) : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
};

export function metricsCsv(records) {
  const columns = [];
  for (const record of records) for (const key of Object.keys(record)) if (!columns.includes(key)) columns.push(key);
  const lines = [columns.join(","), ...records.map((record) => columns.map((key) => cell(record[key])).join(","))];
  return `${lines.join("\r\n")}\r\n`;
}

// Offer `text` as a file download named `filename`.
export function downloadText(text, filename, type = "text/csv") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
