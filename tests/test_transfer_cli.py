"""`mlitb project create --from CLOSURE --dataset D --new-head` against a real master (issue 15)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.helpers import REPO, TOKEN
from tests.master_support import ADMIN

HIDDEN = [{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
          {"type": "fc", "num_neurons": 8, "activation": "relu"},
          {"type": "softmax", "num_classes": 10}]


async def mlitb(*args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLITB_ADMIN_TOKEN"}
    if token:
        env["MLITB_ADMIN_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "mlitb.cli", *args, cwd=REPO, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, out.decode(), err.decode()


async def test_project_create_from_a_closure_file_and_from_a_project(system, tmp_path: Path):
    source = await system.create_project(layers=HIDDEN, status="paused")
    closure = tmp_path / "source.json"
    closure.write_text((await system.api.get(f"/api/projects/{source['id']}/closure")).text)
    dataset = system.dataset["id"]

    code, out, err = await mlitb("project", "create", "--from", str(closure), "--dataset", dataset, "--new-head",
                                 "--lr-multipliers", "[1, 0, 1]", "--name", "cli transfer", "--master", system.master_url,
                                 "--json")
    assert code == 0, err
    created = (await system.api.get(f"/api/projects/{json.loads(out)['id']}")).json()
    assert created["name"] == "cli transfer" and created["lr_multipliers"] == [1, 0, 1] and created["status"] == "paused"

    code, out, err = await mlitb("project", "create", "--from", source["id"], "--dataset", dataset,
                                 "--master", system.master_url, "--json")
    assert code == 0, err
    assert (await system.api.get(f"/api/projects/{json.loads(out)['id']}")).json()["layers"] == HIDDEN

    code, out, err = await mlitb("project", "create", "--from", "no-such-project", "--dataset", dataset,
                                 "--master", system.master_url)
    assert code == 1 and "no project 'no-such-project'" in err, err
    code, _out, err = await mlitb("project", "create", "--from", str(closure), "--dataset", dataset,
                                  "--lr-multipliers", "freeze", "--master", system.master_url)
    assert code == 1 and "--lr-multipliers must be a JSON list" in err, err
    assert len((await system.api.get("/api/projects", headers=ADMIN)).json()) == 3
