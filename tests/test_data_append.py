"""POST /datasets/{id}/examples over real HTTP, on both store backends: a dataset grows, or stays exactly as it was."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from mlitb.data.app import create_data_app
from tests.data_support import LIMITS, download_split, trace, upload
from tests.datazips import (
    image_zip,
    make_zip,
    png,
    png_with_dimensions,
    sorted_examples,
    symlink_zip,
)
from tests.helpers import ADMIN, TOKEN, serve_app

GREY = png(np.zeros((5, 6), np.uint8))


@pytest.fixture
async def server(store):
    app = create_data_app(store, TOKEN, limits=LIMITS, bootstrap=False)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture
async def pets(server) -> dict:
    """A 3-class greyscale 5x6 dataset with 15 train examples and no test split."""
    response = await upload(server, image_zip(per_class=5, seed=1)[0], name="pets", holdout="0", shard_size="4")
    assert response.status_code == 201, response.text
    return response.json()


async def append(client, dataset: str, *, zipped: bytes | None = None, image: bytes | None = None,
                 other: bytes | None = None, headers=ADMIN, **params) -> httpx.Response:
    files = {"photo": ("photo.png", other, "image/png")} if other is not None else {}
    if zipped is not None:
        files["zip"] = ("more.zip", zipped, "application/zip")
    if image is not None:
        files["image"] = ("photo.png", image, "image/png")
    return await client.post(f"/datasets/{dataset}/examples", files=files, params=params, headers=headers)


async def test_append_zip_adds_train_shards_and_keeps_the_old_ones(server, pets):
    more, examples = image_zip(classes=("cat", "eel"), per_class=3, seed=7, root="new")
    response = await append(server, pets["id"], zipped=more)
    assert response.status_code == 200, response.text
    grown = response.json()
    assert grown["id"] == pets["id"] and grown["revision"] == 1 and pets["revision"] == 0
    assert grown["updated"] >= grown["created"] == pets["created"]
    assert grown["splits"]["train"]["counts"] == {"cat": 8, "dog": 5, "eel": 8}
    old = pets["splits"]["train"]["shards"]
    assert grown["splits"]["train"]["shards"][: len(old)] == old
    assert [ref["count"] for ref in grown["splits"]["train"]["shards"][len(old) :]] == [4, 2]
    assert grown["splits"]["test"] == pets["splits"]["test"]
    assert (await server.get(f"/datasets/{pets['id']}")).json() == grown
    new_only = {**grown, "splits": {"train": {"shards": grown["splits"]["train"]["shards"][len(old) :]}}}
    pixels, labels = await download_split(server, new_only, "train")
    assert sorted_examples(pixels, labels) == sorted_examples(np.stack([e.pixels for e in examples]), [e.label for e in examples])


async def test_append_image_is_decoded_like_the_ingest(server, pets):
    photo = png(np.random.default_rng(3).integers(0, 256, (10, 12, 3), dtype=np.uint8))
    response = await append(server, pets["id"], image=photo, label="dog")
    assert response.status_code == 200, response.text
    grown = response.json()
    assert grown["revision"] == 1 and grown["splits"]["train"]["count"] == pets["splits"]["train"]["count"] + 1
    assert grown["splits"]["train"]["counts"]["dog"] == 6
    added = grown["splits"]["train"]["shards"][-1]
    assert added["count"] == 1
    pixels, labels = await download_split(server, {**grown, "splits": {"train": {"shards": [added]}}}, "train")
    same_by_ingest = (await upload(server, make_zip({"p/dog/1.png": photo, "p/cat/1.png": GREY}),
                                   size="6x5", channels="1", holdout="0", name="ref")).json()
    ref_pixels, ref_labels = await download_split(server, same_by_ingest, "train")
    assert labels == ["dog"] and pixels.shape == (1, 5, 6, 1)
    assert (pixels[0] == ref_pixels[ref_labels.index("dog")]).all()
    again = await append(server, pets["id"], image=png(np.full((5, 6), 9, np.uint8)), label="cat")
    assert again.json()["revision"] == 2 and again.json()["splits"]["train"]["count"] == grown["splits"]["train"]["count"] + 1


BAD_APPENDS = {
    "unknown class in the zip": (
        {"zipped": image_zip(classes=("cat", "cow"), per_class=1)[0]}, 400, "no class 'cow': use one of its classes: cat, dog, eel"),
    "unknown label of an image": ({"image": GREY, "label": "horse"}, 400, "no class 'horse': use one of its classes: cat, dog, eel"),
    "image without label": ({"image": GREY}, 400, "?label=CLASS"),
    "zip with a label": ({"zipped": image_zip(per_class=1)[0], "label": "cat"}, 400, "label goes with an image"),
    "both a zip and an image": ({"zipped": image_zip(per_class=1)[0], "image": GREY, "label": "cat"}, 400, "Too many files"),
    "no body": ({}, 400, "send a multipart/form-data body"),
    "wrong field name": ({"other": GREY, "label": "cat"}, 400, "exactly one file field"),
    "unknown parameter": ({"image": GREY, "label": "cat", "size": "2x2"}, 400, "unknown parameter size"),
    "not a zip": ({"zipped": b"just text"}, 400, "not a zip file"),
    "symlink in the zip": ({"zipped": symlink_zip()}, 400, "symbolic link"),
    "dot-dot path": ({"zipped": make_zip({"d/../../cat/1.png": GREY})}, 400, "outside the zip"),
    "undecodable image in the zip": ({"zipped": make_zip({"d/cat/1.png": b"\x89PNG no"})}, 400, "not an image"),
    "undecodable image": ({"image": b"\x89PNG garbage", "label": "cat"}, 400, "not an image"),
    "decompression-bomb image": ({"image": png_with_dimensions(8000, 8000), "label": "cat"}, 400, "dimensions"),
    "over the size limit": ({"image": bytes(LIMITS.max_upload_bytes + 10), "label": "cat"}, 413, "limit"),
    "no token": ({"image": GREY, "label": "cat", "headers": {}}, 401, "admin token"),
    "wrong token": ({"image": GREY, "label": "cat", "headers": {"Authorization": "Bearer x"}}, 401, "wrong admin token"),
}


@pytest.mark.parametrize("case", list(BAD_APPENDS))
async def test_refused_append_leaves_manifest_and_store_untouched(server, store, pets, case):
    kwargs, status, message = BAD_APPENDS[case]
    before = await trace(store)
    response = await append(server, pets["id"], **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert await trace(store) == before
    assert (await server.get(f"/datasets/{pets['id']}")).json() == pets


async def test_same_examples_twice_is_409_and_changes_nothing(server, store, pets):
    more = image_zip(classes=("dog",), per_class=2, seed=9)[0]
    assert (await append(server, pets["id"], zipped=more)).status_code == 200
    before = await trace(store)
    grown = (await server.get(f"/datasets/{pets['id']}")).json()
    response = await append(server, pets["id"], zipped=more)
    assert response.status_code == 409 and "already in dataset" in response.json()["error"]
    assert await trace(store) == before
    assert (await server.get(f"/datasets/{pets['id']}")).json() == grown


async def test_append_to_unknown_dataset_is_404(server, store):
    response = await append(server, "nope", image=GREY, label="cat")
    assert response.status_code == 404 and "no dataset 'nope'" in response.json()["error"]
    assert await store.keys() == []
