"""A project's description: what volunteers read before lending their device. Set at creation,
changed by PATCH, shown in the API's project JSON, kept across a master restart, bounded."""

from __future__ import annotations

import json

from mlitb.master.definition import MAX_DESCRIPTION, ProjectDef
from tests.master_support import ADMIN, TINY_LAYERS, running_system


async def test_description_is_created_patched_listed_and_bounded(system):
    project = await system.create_project(description="  Teach a net to read digits.  ")
    assert project["description"] == "Teach a net to read digits."
    pid = project["id"]
    patched = await system.api.patch(f"/api/projects/{pid}", json={"description": "<b>bold</b> claims"}, headers=ADMIN)
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] == "<b>bold</b> claims", "stored as plain text, escaping is the page's job"
    listed = (await system.api.get("/api/projects")).json()
    assert [p["description"] for p in listed] == ["<b>bold</b> claims"]
    for bad in (7, None, "x" * (MAX_DESCRIPTION + 1)):
        response = await system.api.patch(f"/api/projects/{pid}", json={"description": bad}, headers=ADMIN)
        assert response.status_code == 400 and response.json()["field"] == "description", response.text
    refused = await system.api.post("/api/projects", headers=ADMIN, json={
        "name": "n", "dataset": system.dataset["id"], "layers": TINY_LAYERS, "description": ["list"]})
    assert refused.status_code == 400 and refused.json()["field"] == "description"
    cleared = await system.api.patch(f"/api/projects/{pid}", json={"description": ""}, headers=ADMIN)
    assert cleared.json()["description"] == ""


async def test_description_survives_a_master_restart(mnist_dir, tmp_path):  # noqa: F811
    from tests.master_support import copy_store

    store = copy_store(mnist_dir, tmp_path / "store")
    async with running_system(store) as first:
        pid = (await first.create_project(description="kept")).get("id")
    async with running_system(type(store)(tmp_path / "store")) as second:
        assert (await second.api.get(f"/api/projects/{pid}")).json()["description"] == "kept"


def test_a_definition_saved_before_descriptions_existed_loads_with_none():
    old = {"id": "p-1", "name": "p", "dataset": "d", "layers": TINY_LAYERS, "iteration_ms": 1000,
           "optimizer": {"name": "adagrad"}, "normalization": {"scale": 1 / 255, "offset": 0.0}, "eval_every": 10,
           "seed": 0, "status": "paused", "created": 1.0}
    assert ProjectDef.from_json(json.dumps(old).encode()).description == ""
