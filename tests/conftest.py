from __future__ import annotations

import pytest
import redis

from mlitb.store import FileStore, RedisStore
from tests.redis_process import redis_server

# The support modules' fixtures, declared once for every test module.
pytest_plugins = ["tests.master_support", "tests.browser_support", "tests.e2e_system"]


@pytest.fixture(scope="session")
def redis_url():
    """One real redis-server for the session; each test gets a flushed database."""
    with redis_server() as url:
        yield url


@pytest.fixture
def clean_redis_url(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


@pytest.fixture(params=["file", "redis"])
async def store(request, tmp_path):
    """Every store backend, so one test runs against both."""
    if request.param == "file":
        backend = FileStore(tmp_path / "store")
    else:
        backend = RedisStore(request.getfixturevalue("clean_redis_url"))
    yield backend
    await backend.close()
