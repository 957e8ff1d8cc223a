"""The shipped MNIST: ingested into an empty store at startup, served back pixel for pixel."""

from __future__ import annotations

import io
import zipfile

import httpx
import numpy as np
from PIL import Image

from mlitb.data.app import create_data_app
from mlitb.data.catalog import ensure_shipped_datasets, list_datasets
from mlitb.data.shards import decode_shard
from tests.datazips import image_zip, sorted_examples
from tests.helpers import DATASETS, serve_app


def source_examples(path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(".png")]
        pixels = np.stack([np.asarray(Image.open(io.BytesIO(archive.read(n))).convert("L")) for n in names])
    return sorted_examples(pixels[..., None], [n.split("/")[-2] for n in names])


async def test_startup_ingests_mnist_once_and_serves_it_exactly(store):
    async with serve_app(create_data_app(store, "t")) as url, httpx.AsyncClient(base_url=url) as client:
        [manifest] = (await client.get("/datasets")).json()["datasets"]
        assert manifest["name"] == "mnist" and manifest["shape"] == [28, 28, 1]
        assert manifest["classes"] == [str(d) for d in range(10)]
        assert manifest["splits"]["train"]["count"] == 8000 and manifest["splits"]["test"]["count"] == 2000
        for split, source in (("train", "mnist-train.zip"), ("test", "mnist-test.zip")):
            pixels, labels = [], []
            for ref in manifest["splits"][split]["shards"]:
                shard = decode_shard((await client.get(f"/datasets/{manifest['id']}/shards/{ref['id']}")).content)
                pixels.append(shard.pixels)
                labels += [manifest["classes"][i] for i in shard.labels]
            assert sorted_examples(np.concatenate(pixels), labels) == source_examples(DATASETS / source)
    async with serve_app(create_data_app(store, "t")) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/datasets")).json()["datasets"] == [manifest]


async def test_bootstrap_leaves_a_store_with_datasets_alone(store):
    async with serve_app(create_data_app(store, "t", bootstrap=False)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/datasets", files={"train": ("pets.zip", image_zip()[0])}, headers={"Authorization": "Bearer t"}
        )
        assert response.status_code == 201
    existing = await ensure_shipped_datasets(store)
    assert [m.name for m in existing] == ["pets"]
    assert [m.name for m in await list_datasets(store)] == ["pets"]


async def test_bootstrap_without_shipped_files_keeps_the_store_empty(store, tmp_path):
    assert await ensure_shipped_datasets(store, directory=tmp_path) == []
    assert await store.keys() == []
