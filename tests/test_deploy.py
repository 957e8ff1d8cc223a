"""docker-compose.yml and the Dockerfile agree with the CLI (Docker itself cannot run here).

Every command is parsed by `mlitb.cli.build_parser()`, so a renamed flag or a
wrong value breaks this test, not a deployment; published ports, health-check
URLs and environment variables are checked against what those commands listen
on and what the code reads.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from mlitb.cli import build_parser
from tests.helpers import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = {name: s for name, s in SERVICES.items() if s.get("command", [""])[0] == "mlitb"}
HEALTH_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/\S*?)'")


def _parse(command: list[str]):
    assert command[0] == "mlitb", command
    try:
        return build_parser().parse_args(command[1:])
    except SystemExit:
        pytest.fail(f"the CLI refuses {shlex.join(command)}")


def _variables_the_code_reads() -> set[str]:
    return {name for path in (REPO / "mlitb").rglob("*.py") for name in re.findall(r"MLITB_[A-Z_]+", path.read_text())}


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_stack_is_redis_master_and_data():
    assert set(SERVICES) == {"redis", "master", "data"}
    assert [name for name, s in APP_SERVICES.items()] == ["master", "data"]
    assert _parse(SERVICES["master"]["command"]).command == "serve"
    data = _parse(SERVICES["data"]["command"])
    assert (data.command, data.data_command) == ("data", "serve")


@pytest.mark.parametrize("name", ["master", "data"])
def test_ports_and_health_checks_match_the_command(name):
    service = SERVICES[name]
    args = _parse(service["command"])
    assert args.host == "0.0.0.0", "inside a container the server must listen on every interface"
    published = [int(mapping.split(":")[-1]) for mapping in service["ports"]]
    assert published == [args.port]
    (port, path), = HEALTH_URL.findall(" ".join(service["healthcheck"]["test"]))
    assert (int(port), path) == (args.port, "/healthz")


def test_the_master_runs_no_data_server_of_its_own_and_points_to_the_data_service():
    master = SERVICES["master"]
    args = _parse(master["command"])
    assert args.data_port == 0
    data_port = _parse(SERVICES["data"]["command"]).port
    assert master["environment"]["MLITB_DATA_URL"].rstrip("}").endswith(f":{data_port}")


@pytest.mark.parametrize("name", ["master", "data"])
def test_environment_is_what_the_code_reads_and_redis_is_the_redis_service(name):
    environment = SERVICES[name]["environment"]
    assert set(environment) <= _variables_the_code_reads()
    assert environment["MLITB_REDIS_URL"] == "redis://redis:6379/0"
    assert "MLITB_ADMIN_TOKEN" in environment, "master and data server must share the admin token"
    assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in SERVICES["redis"]


def test_volumes_hold_the_data_directory_and_redis_persists():
    data_dir = dict(arg.split("=", 1) for _i, args in _dockerfile() if _i == "ENV" for arg in args.split())["MLITB_DATA_DIR"]
    for name in APP_SERVICES:
        assert any(v.endswith(f":{data_dir}") for v in SERVICES[name]["volumes"])
    assert "--appendonly" in SERVICES["redis"]["command"]
    assert any(v.endswith(":/data") for v in SERVICES["redis"]["volumes"])
    assert set(COMPOSE["volumes"]) == {v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", [])}


def test_dockerfile_copies_what_exists_and_its_default_command_parses():
    instructions = _dockerfile()
    for instruction, args in instructions:
        if instruction == "COPY":
            for source in args.split()[:-1]:
                assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    (cmd,) = [args for instruction, args in instructions if instruction == "CMD"]
    args = _parse(yaml.safe_load(cmd))
    exposed = {int(port) for instruction, a in instructions if instruction == "EXPOSE" for port in a.split()}
    assert {args.port} | ({args.data_port} if args.data_port else set()) <= exposed
    assert all(s.get("build") == "." for s in APP_SERVICES.values())


def test_deploy_doc_names_the_same_commands():
    doc = (REPO / "docs" / "deploy.md").read_text()
    for service in APP_SERVICES.values():
        assert " ".join(service["command"][:3]) in doc
    assert "docker compose up" in doc and "MLITB_REDIS_URL" in doc


def test_the_several_masters_compose_variant_agrees_with_the_cli():
    """docker-compose.masters.yml (docs/deploy.md, shape 4): 2 masters with their own public URLs, 2 data servers."""
    services = yaml.safe_load((REPO / "docker-compose.masters.yml").read_text())["services"]
    assert set(services) == {"redis", "master1", "master2", "data1", "data2"}
    known = _variables_the_code_reads()
    for name in ("master1", "master2"):
        args = _parse(services[name]["command"])
        environment = services[name]["environment"]
        assert args.command == "serve" and args.host == "0.0.0.0"
        assert [int(m.split(":")[-1]) for m in services[name]["ports"]] == [args.port]
        assert environment["MLITB_PUBLIC_URL"].rstrip("}").endswith(f":{args.port}")
        assert set(environment) <= known
    for name in ("data1", "data2"):
        args = _parse(services[name]["command"])
        assert (args.command, args.data_command) == ("data", "serve")
        assert set(services[name]["environment"]) <= known
    assert "docker-compose.masters.yml" in (REPO / "docs" / "deploy.md").read_text()
