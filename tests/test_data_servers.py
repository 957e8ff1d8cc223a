"""Several data servers on one Redis serve the same datasets; what one ingests, the others serve at once.

Two real `mlitb data serve` processes on one real redis-server, as behind a
load balancer: an upload through one is readable through the other in the
very next request, shard bytes and ETags are identical, and a delete through
the second is gone from the first.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.datazips import image_zip
from tests.e2e_system import TOKEN, _env
from tests.helpers import REPO, free_port, wait_for_port

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def data_server(redis_url: str, tmp: Path, name: str) -> Iterator[str]:
    port = free_port()
    log = open(tmp / f"{name}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlitb.cli", "data", "serve", "--port", str(port),
                             "--redis", redis_url, "--data-dir", str(tmp / name)],
                            cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60, process=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_an_upload_through_one_data_server_is_served_by_another_at_once(clean_redis_url, tmp_path: Path):
    with data_server(clean_redis_url, tmp_path, "one") as one, data_server(clean_redis_url, tmp_path, "two") as two:
        assert httpx.get(f"{one}/datasets").json() == httpx.get(f"{two}/datasets").json()
        assert [d["name"] for d in httpx.get(f"{two}/datasets").json()["datasets"]] == ["mnist"]
        train, _examples = image_zip(per_class=8)
        uploaded = httpx.post(f"{one}/datasets", files={"train": ("pets.zip", train, "application/zip")},
                              params={"name": "pets", "shard_size": "5"}, headers=ADMIN, timeout=60)
        assert uploaded.status_code == 201, uploaded.text
        manifest = uploaded.json()

        seen = httpx.get(f"{two}/datasets/{manifest['id']}")
        assert seen.status_code == 200 and seen.json() == manifest
        shards = manifest["splits"]["train"]["shards"] + manifest["splits"]["test"]["shards"]
        assert len(shards) > 1
        for ref in shards:
            a, b = (httpx.get(f"{url}/datasets/{manifest['id']}/shards/{ref['id']}") for url in (one, two))
            assert a.status_code == b.status_code == 200
            assert a.content == b.content and len(a.content) == ref["bytes"]
            assert a.headers["etag"] == b.headers["etag"] == f'"{ref["id"]}"'

        assert httpx.delete(f"{two}/datasets/{manifest['id']}", headers=ADMIN).status_code == 204
        assert httpx.get(f"{one}/datasets/{manifest['id']}").status_code == 404
        assert all(httpx.get(f"{url}/healthz").json()["ok"] for url in (one, two))
    assert not (tmp_path / "one").exists() and not (tmp_path / "two").exists(), "Redis, not the file store"
