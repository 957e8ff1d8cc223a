import { test } from "node:test";
import assert from "node:assert/strict";
import { MasterList, masterSocketUrl } from "../../mlitb/static/js/master-list.js";

test("a moved frame with a URL is followed at once and its masters are kept", () => {
  const list = new MasterList("ws://127.0.0.1:8000/ws");
  assert.equal(list.moved("http://127.0.0.1:8002", ["http://127.0.0.1:8000", "http://127.0.0.1:8004"]), true);
  assert.equal(list.current, "ws://127.0.0.1:8002/ws");
  assert.deepEqual(list.known, ["ws://127.0.0.1:8000/ws", "ws://127.0.0.1:8004/ws", "ws://127.0.0.1:8002/ws"]);
});

test("without an owner, or after a failed connection, the next known master is tried in turn", () => {
  const list = new MasterList("ws://a:1/ws");
  list.failed();
  assert.equal(list.current, "ws://a:1/ws"); // alone: stays
  assert.equal(list.moved(null, ["http://b:2", "javascript:alert(1)", 42]), false);
  assert.equal(list.current, "ws://b:2/ws");
  assert.deepEqual(list.known, ["ws://a:1/ws", "ws://b:2/ws"]); // only http(s) URLs are learned
  list.failed();
  assert.equal(list.current, "ws://a:1/ws");
});

test("https masters become wss sockets", () => {
  assert.equal(masterSocketUrl("https://m.example.org"), "wss://m.example.org/ws");
  assert.equal(masterSocketUrl("http://m.example.org:8000/"), "ws://m.example.org:8000/ws");
});
