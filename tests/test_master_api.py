"""The master's HTTP API over real HTTP: CRUD, admin auth, clear 400s, health and metrics."""

from __future__ import annotations

import pytest

from tests.master_support import ADMIN, TINY_LAYERS


def body(system, **overrides):
    return {"name": "tiny", "dataset": system.dataset["id"], "layers": TINY_LAYERS, "iteration_ms": 1000, **overrides}


async def test_config_names_the_data_server(system):
    config = (await system.api.get("/api/config")).json()
    assert config["data_url"] == system.data_url
    assert config["default_project"] is None
    assert config["version"]


async def test_admin_actions_need_the_token(system):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = await system.api.post("/api/projects", json=body(system), headers=headers)
        assert response.status_code == 401
        assert "admin token" in response.json()["error"]
    project = await system.create_project()
    for method, path in (("POST", "/start"), ("POST", "/pause"), ("PATCH", ""), ("DELETE", "")):
        response = await system.api.request(method, f"/api/projects/{project['id']}{path}", json={})
        assert response.status_code == 401, (method, path)


@pytest.mark.parametrize(
    "overrides, field, words",
    [
        ({"name": ""}, "name", "non-empty"),
        ({"dataset": "nope"}, "dataset", "no dataset 'nope'"),
        ({"layers": [{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1}, {"type": "fc", "num_neurons": -3},
                     {"type": "softmax", "num_classes": 10}]},
         "num_neurons", "layer 1 (fc)"),
        ({"layers": [{"type": "input", "out_sx": 32, "out_sy": 32, "out_depth": 3}, {"type": "softmax", "num_classes": 10}]},
         "layers", "dataset"),
        ({"layers": [{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1}, {"type": "softmax", "num_classes": 3}]},
         "layers", "10"),
        ({"iteration_ms": 5}, "iteration_ms", "integer from"),
        ({"optimizer": {"learning_rate": -1}}, "optimizer.learning_rate", "number in"),
        ({"optimizer": {"name": "lbfgs"}}, "optimizer.name", "adagrad"),
        ({"optimizer": {"lr": 0.1}}, "optimizer.lr", "unknown"),
        ({"eval_every": 0}, "eval_every", "integer"),
        ({"normalization": {"scale": "big"}}, "normalization.scale", "finite"),
    ],
)
async def test_bad_create_bodies_get_400_naming_the_field(system, overrides, field, words):
    response = await system.api.post("/api/projects", json=body(system, **overrides), headers=ADMIN)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["field"] == field
    assert words in answer["error"]


async def test_bad_layer_names_index_and_field(system):
    layers = [{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1}, {"type": "conv", "sx": 5, "filters": 0},
              {"type": "softmax", "num_classes": 10}]
    response = await system.api.post("/api/projects", json=body(system, layers=layers), headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["layer"] == 1
    assert response.json()["field"] == "filters"
    assert "layer 1 (conv)" in response.json()["error"]


async def test_not_json_is_a_clear_400(system):
    response = await system.api.post("/api/projects", content=b"{nope", headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["field"] == "body"


async def test_layers_check(system):
    layers = [{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
              {"type": "conv", "sx": 5, "filters": 8, "pad": 2, "activation": "relu"},
              {"type": "pool", "sx": 2, "stride": 2}, {"type": "softmax", "num_classes": 10}]
    answer = (await system.api.post("/api/layers/check", json={"layers": layers})).json()
    assert answer["param_count"] == 8 * 25 + 8 + 14 * 14 * 8 * 10 + 10
    assert [layer["type"] for layer in answer["layers"]] == ["input", "conv", "relu", "pool", "fc", "softmax"]
    assert answer["layers"][3] == {"type": "pool", "out_sx": 14, "out_sy": 14, "out_depth": 8}
    layers[2] = {"type": "pool", "sx": 0}
    bad = await system.api.post("/api/layers/check", json={"layers": layers})
    assert bad.status_code == 400
    assert (bad.json()["layer"], bad.json()["field"]) == (2, "sx")


async def test_crud(system):
    created = await system.create_project(status="paused", seed=7)
    pid = created["id"]
    assert created["status"] == "paused" and created["iteration"] == 0
    assert created["param_count"] == 7850 and created["workers"] == []
    assert created["optimizer"]["learning_rate"] == 0.01 and created["seed"] == 7
    listed = (await system.api.get("/api/projects")).json()
    assert [p["id"] for p in listed] == [pid]
    assert (await system.api.get("/api/config")).json()["default_project"] == pid

    started = (await system.api.post(f"/api/projects/{pid}/start", headers=ADMIN)).json()
    assert started["status"] == "running"
    paused = (await system.api.post(f"/api/projects/{pid}/pause", headers=ADMIN)).json()
    assert paused["status"] == "paused"

    patched = await system.api.patch(f"/api/projects/{pid}", json={"iteration_ms": 3000, "optimizer": {"learning_rate": 0.05}},
                                     headers=ADMIN)
    assert patched.status_code == 200
    assert patched.json()["iteration_ms"] == 3000
    assert patched.json()["optimizer"]["learning_rate"] == 0.05
    assert patched.json()["optimizer"]["name"] == "adagrad"
    for change, field in (({"optimizer": {"name": "adam"}}, "optimizer.name"), ({"layers": []}, "layers"),
                          ({"iteration_ms": 0}, "iteration_ms")):
        response = await system.api.patch(f"/api/projects/{pid}", json=change, headers=ADMIN)
        assert response.status_code == 400 and response.json()["field"] == field

    assert (await system.api.get(f"/api/projects/{pid}/metrics")).json() == []
    assert (await system.api.get(f"/api/projects/{pid}/metrics?since=x")).status_code == 400
    assert (await system.api.delete(f"/api/projects/{pid}", headers=ADMIN)).status_code == 204
    missing = await system.api.get(f"/api/projects/{pid}")
    assert missing.status_code == 404 and "no project" in missing.json()["error"]
    assert await system.store.keys(f"projects/{pid}") == []


async def test_health_metrics_and_ui(system):
    project = await system.create_project()
    health = await system.api.get("/healthz")
    assert health.status_code == 200 and health.json()["ok"]
    metrics = await system.api.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert f'mlitb_iteration{{project="{project["id"]}"}} 0' in metrics.text
    assert "# TYPE mlitb_results_dropped_total counter" in metrics.text
    index = await system.api.get("/")
    assert index.status_code == 200 and "<html" in index.text.lower()


async def test_both_servers_answer_a_wrong_token_the_same_way_and_parse_the_header_alike(system):
    """One `require_admin` for the master and the data server: same status, body and header parsing."""
    master_delete = f"/api/projects/{(await system.create_project())['id']}"
    data_delete = f"{system.data_url}/datasets/no-such-dataset"
    answers = {}
    for name, url in (("master", master_delete), ("data", data_delete)):
        wrong = await system.api.delete(url, headers={"Authorization": "Bearer wrong"})
        missing = await system.api.delete(url)
        answers[name] = (wrong.status_code, wrong.json(), wrong.headers.get("www-authenticate"),
                         missing.status_code, missing.json())
        spaced = await system.api.delete(url, headers={"Authorization": ADMIN["Authorization"].replace(" ", "  ")})
        assert spaced.status_code in (204, 404), (name, spaced.text)  # the token was accepted
    assert answers["master"] == answers["data"]
    assert answers["master"][0] == 401 and answers["master"][2] == "Bearer"
    assert "wrong admin token" in answers["master"][1]["error"]
    token_check = [(await system.api.get(f"{system.data_url}/token", headers=headers)).status_code
                   for headers in ({"Authorization": "Bearer wrong"}, {}, ADMIN)]
    assert token_check == [401, 401, 204], "GET /token is what `mlitb data add` asks before it uploads"


async def test_a_pause_does_not_wait_for_spot_checks_in_flight(system):
    """A recomputation can take seconds on a loaded machine; pausing (and the researcher's answer) must not."""
    import asyncio

    project = await system.create_project()
    registry, rt = system.app.state.registry, system.runtime(project["id"])
    forever = asyncio.Event()
    check = registry._spawn(registry._side[rt.id], forever.wait(), check=True)
    async with asyncio.timeout(10):
        await registry.pause(rt)
    assert not check.done(), "the check goes on; only its trust record waits for it"
    await registry.delete(rt)
    await asyncio.wait([check], timeout=10)
    assert check.cancelled(), "deleting the project cancels its checks"
