import { test } from "node:test";
import assert from "node:assert/strict";
import { shareLink, workerCommand } from "../../mlitb/static/js/share.js";
import { metricsCsv } from "../../mlitb/static/js/metrics-csv.js";

test("the share link opens the volunteer page on the project", () => {
  assert.equal(shareLink("https://ml.example.org/", "mnist-1a2b"), "https://ml.example.org/?project=mnist-1a2b");
  assert.equal(shareLink("http://127.0.0.1:8500", "a b&c"), "http://127.0.0.1:8500/?project=a%20b%26c");
});

test("the worker command is complete and shell-safe", () => {
  assert.equal(workerCommand("http://127.0.0.1:8500/", "mnist-1a2b"), "mlitb worker --master http://127.0.0.1:8500 --project mnist-1a2b");
  assert.equal(workerCommand("https://h", "it's; rm"), "mlitb worker --master https://h --project 'it'\\''s; rm'");
});

test("metrics become CSV with every field as a column and nulls empty", () => {
  const csv = metricsCsv([
    { iteration: 0, train_loss: 2.3, test_accuracy: null },
    { iteration: 1, train_loss: 2.1, test_accuracy: 0.5, note: "a,\"b\"" },
  ]);
  assert.equal(csv, 'iteration,train_loss,test_accuracy,note\r\n0,2.3,,\r\n1,2.1,0.5,"a,""b"""\r\n');
  assert.equal(metricsCsv([]), "\r\n");
});
