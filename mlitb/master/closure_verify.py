"""`mlitb verify`: does a closure's last recorded test result reproduce from its own data?

MLitB hoped for "some kind of system for verifying models, like
recomputation.org". A closure names its data by content (`dataset.shards`,
each a hash of the shard's examples) and records test figures of its
parameters, so anyone can fetch those shards by hash from a data server,
check each one's content against its hash, and recompute the figures with the
numpy engine and the master's own evaluation code (master/evaluation.py). It
reproduces, or the report says what differs: a shard that is missing or has
other content, or a loss / accuracy that comes out different.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from mlitb.closure import Closure
from mlitb.data.shards import ShardError, content_id, decode_shard
from mlitb.master.evaluation import TestSource, decode_test_set, evaluate

LOSS_TOLERANCE = 1e-5  # relative: another BLAS may sum the float32 products in another order


@dataclass
class Report:
    """`ok` when every shard matched and the figures reproduced; `lines` say what was checked, `problems` what differs."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        verdict = "REPRODUCED" if self.ok else "NOT REPRODUCED"
        return "\n".join([*self.lines, *(f"DIFFERS: {p}" for p in self.problems), verdict])

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "lines": self.lines, "problems": self.problems}


Fetch = Callable[[str], bytes]  # shard id -> the zip bytes served under it


def verify_closure(closure: Closure, fetch: Fetch) -> Report:
    """Check every shard of the fingerprint and recompute the last recorded test figures."""
    report = Report()
    test_ids = set(closure.dataset.test)
    blobs: dict[str, bytes] = {}
    for shard_id in closure.dataset.shards:
        try:
            blob = fetch(shard_id)
            actual = content_id(blob)
        except (OSError, httpx.HTTPError, ShardError, LookupError) as exc:
            report.problems.append(f"shard {shard_id}: {exc}")
            continue
        if actual != shard_id:
            report.problems.append(f"shard {shard_id}: its content hashes to {actual}, so it holds other examples "
                                   "than the closure was trained and tested on")
        elif shard_id in test_ids:
            blobs[shard_id] = blob
    report.lines.append(f"dataset {closure.dataset.name or closure.dataset.id}: {len(closure.dataset.shards)} shards "
                        f"checked against their content hashes, {len(closure.dataset.shards) - len(report.problems)} match")

    tested = [m for m in closure.metrics if m.get("test_loss") is not None and m.get("test_accuracy") is not None]
    if not tested:
        report.lines.append("the closure records no test figures: only its data was checked")
        return report
    record = tested[-1]
    last = closure.training.iteration - 1
    if record["iteration"] != last:
        report.problems.append(f"the last test figures are of the parameters after iteration {record['iteration']}, "
                               f"but the closure holds those after iteration {last}: download the closure again "
                               "(the master evaluates a closure's own parameters when it is downloaded)")
        return report
    if not closure.dataset.test:
        report.problems.append("dataset.test is empty: the closure does not say which shards are its test split")
        return report
    if report.problems:
        return report
    max_examples = closure.training.settings.get("eval_max_examples")
    if not isinstance(max_examples, int) or max_examples < 1:
        max_examples = 1 << 62  # older closures: every test example
    source = TestSource(closure.layers, tuple(_prefix(closure.dataset.test, blobs, max_examples)),
                        {"scale": closure.normalization.scale, "offset": closure.normalization.offset},
                        tuple(closure.input_shape), max_examples)
    result = evaluate(closure.net(), closure.params, decode_test_set(source))
    report.lines.append(f"iteration {record['iteration']}: recorded test loss {record['test_loss']:.6f}, accuracy "
                        f"{record['test_accuracy']:.4f}; recomputed {result.loss:.6f}, {result.accuracy:.4f} "
                        f"on {result.count} test examples")
    if abs(result.loss - record["test_loss"]) > LOSS_TOLERANCE * max(1.0, abs(record["test_loss"])):
        report.problems.append(f"test loss: recorded {record['test_loss']!r}, recomputed {result.loss!r}")
    if result.count and abs(result.accuracy - record["test_accuracy"]) * result.count > 1.0 + 1e-9:
        report.problems.append(f"test accuracy: recorded {record['test_accuracy']!r}, recomputed {result.accuracy!r} "
                               f"({round(abs(result.accuracy - record['test_accuracy']) * result.count)} of "
                               f"{result.count} examples classified differently)")
    return report


def _prefix(test_ids: list[str], blobs: dict[str, bytes], max_examples: int) -> list[bytes]:
    """The test shards the master would have read: in order, until `max_examples` are covered."""
    chosen, total = [], 0
    for shard_id in test_ids:
        if total >= max_examples:
            break
        chosen.append(blobs[shard_id])
        total += len(decode_shard(blobs[shard_id]).labels)
    return chosen


def http_fetch(client: httpx.Client, data_url: str, dataset_id: str) -> Fetch:
    """Shards from a data server by id: `GET {data_url}/datasets/{dataset}/shards/{id}`."""

    def fetch(shard_id: str) -> bytes:
        response = client.get(f"{data_url.rstrip('/')}/datasets/{dataset_id}/shards/{shard_id}")
        if response.status_code != 200:
            try:
                reason = response.json().get("error", response.text)
            except ValueError:
                reason = response.text[:200]
            raise LookupError(f"the data server at {data_url} answered {response.status_code}: {reason}")
        return response.content

    return fetch


def verify_with_server(closure: Closure, data_url: str) -> Report:
    with httpx.Client(timeout=60) as client:
        return verify_closure(closure, http_fetch(client, data_url, closure.dataset.id))
