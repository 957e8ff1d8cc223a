"""`mlitb conformance`: does a worker compute exactly what the master's engine computes?

For a worker author. Their worker joins a project; this command asks the
master (admin token) to recompute the worker's next results with the numpy
engine, from the same parameters, examples, order and dropout seeds (every
result is reproducible: docs/protocol.md), and prints each verdict: the
gradient's relative error, the parameter block (layer) that differs most,
and whether loss and correct count agree. A wrong parameter layout shows up
as one block far off; a wrong example order or normalisation as all of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx


def check(master: str, project: str, token: str, worker: str | None, results: int, timeout_s: float) -> dict[str, Any]:
    """The master's report (`POST /api/projects/{id}/conformance`), or RuntimeError saying what went wrong."""
    params: dict[str, Any] = {"results": results, "timeout_s": timeout_s}
    if worker:
        params["worker"] = worker
    url = f"{master.rstrip('/')}/api/projects/{project}/conformance"
    try:
        response = httpx.post(url, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s + 30)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"cannot reach the master at {master}: {exc}") from None
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code not in (200, 504):
        raise RuntimeError(f"the master at {master} answered {response.status_code}: {body.get('error', response.text[:200])}")
    return body


def report(body: dict[str, Any]) -> str:
    """The verdicts as lines a person reads."""
    lines = []
    for v in body["checks"]:
        error = "n/a" if v["grad_error"] is None else f"{v['grad_error']:.1e}"
        head = (f"worker {v['worker']}, iteration {v['iteration']}: {v['count']} examples in {v['batches']} batches, "
                f"gradient error {error} relative")
        if v["passed"]:
            lines.append(f"  ok    {head}")
        else:
            lines.append(f"  FAIL  {head}")
            lines.extend(f"        {reason}" for reason in v["reasons"])
    who = f"worker {body['worker']}" if body["worker"] else "the project's trainers"
    if not body["complete"]:
        lines.append(f"INCOMPLETE: {len(body['checks'])} of {body['wanted']} results of {who} arrived in time; is the "
                     "worker connected and the project running?")
    elif body["passed"]:
        lines.append(f"PASS: {len(body['checks'])} results of {who} reproduced by the master's engine.")
    else:
        lines.append(f"FAIL: results of {who} differ from the master's engine (the worker is excluded); see "
                     "docs/protocol.md, 'The parameter layout, worked through' and 'Computing a result'.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("MLITB_ADMIN_TOKEN")
    if not token:
        print("mlitb conformance: needs the admin token: --token or MLITB_ADMIN_TOKEN", file=sys.stderr)
        return 1
    try:
        body = check(args.master, args.project, token, args.worker, args.results, args.timeout)
    except RuntimeError as exc:
        print(f"mlitb conformance: {exc}", file=sys.stderr)
        return 1
    print(report(body))
    return 0 if body["passed"] else 1
