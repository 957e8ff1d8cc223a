"""The data server over real HTTP (uvicorn on a free port), on both store backends."""

from __future__ import annotations

import zipfile

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


@pytest.fixture
async def server(store):
    async with serve_app(create_data_app(store, TOKEN, limits=LIMITS, bootstrap=False)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client














async def test_round_trip_with_test_zip(server, store):
    train, train_examples = image_zip(per_class=7, seed=1)
    test, test_examples = image_zip(per_class=3, seed=2, root="held")
    response = await upload(server, train, test, name="pets")
    assert response.status_code == 201, response.text
    manifest = response.json()
    assert manifest["name"] == "pets" and manifest["classes"] == ["cat", "dog", "eel"] and manifest["shape"] == [5, 6, 1]
    assert manifest["splits"]["train"]["counts"] == {"cat": 7, "dog": 7, "eel": 7}
    assert manifest["splits"]["test"]["counts"] == {"cat": 3, "dog": 3, "eel": 3}
    assert (await server.get(f"/datasets/{manifest['id']}")).json() == manifest
    for split, examples in (("train", train_examples), ("test", test_examples)):
        pixels, labels = await download_split(server, manifest, split)
        expected = [e.pixels for e in examples]
        assert sorted_examples(pixels, labels) == sorted_examples(np.stack(expected), [e.label for e in examples])
    listed = (await server.get("/datasets")).json()["datasets"]
    assert [d["id"] for d in listed] == [manifest["id"]]


async def test_holdout_is_stratified_and_loses_nothing(server):
    train, examples = image_zip(per_class=5, channels=3, seed=3)
    manifest = (await upload(server, train, holdout="0.4", shard_size="4")).json()
    assert manifest["splits"]["test"]["counts"] == {"cat": 2, "dog": 2, "eel": 2}
    assert manifest["splits"]["train"]["counts"] == {"cat": 3, "dog": 3, "eel": 3}
    assert [ref["count"] for ref in manifest["splits"]["train"]["shards"]] == [4, 4, 1]
    train_px, train_labels = await download_split(server, manifest, "train")
    test_px, test_labels = await download_split(server, manifest, "test")
    got = sorted_examples(np.concatenate([train_px, test_px]), train_labels + test_labels)
    assert got == sorted_examples(np.stack([e.pixels for e in examples]), [e.label for e in examples])


async def test_size_and_channels_convert_every_image(server):
    entries = {
        "d/red/1.png": png(np.full((8, 4, 3), (200, 0, 0), np.uint8)),
        "d/grey/1.png": png(np.full((3, 3), 77, np.uint8)),
    }
    manifest = (await upload(server, make_zip(entries), size="2x3", channels="3", holdout="0")).json()
    assert manifest["shape"] == [3, 2, 3] and manifest["classes"] == ["grey", "red"]
    pixels, labels = await download_split(server, manifest, "train")
    by_label = dict(zip(labels, pixels))
    assert (by_label["grey"] == 77).all()
    assert (by_label["red"] == [200, 0, 0]).all()


async def test_shard_caching_headers_and_304(server):
    manifest = (await upload(server, image_zip()[0])).json()
    shard = manifest["splits"]["train"]["shards"][0]["id"]
    url = f"/datasets/{manifest['id']}/shards/{shard}"
    first = await server.get(url)
    assert first.headers["etag"] == f'"{shard}"'
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert first.headers["content-type"] == "application/zip"
    cached = await server.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == f'"{shard}"'
    other = await server.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content


async def test_cors_lets_another_origin_fetch_and_upload(server):
    origin = {"Origin": "http://127.0.0.1:8000"}
    preflight = await server.options(
        "/datasets",
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    manifest = (await upload(server, image_zip()[0])).json()
    shard = manifest["splits"]["train"]["shards"][0]["id"]
    response = await server.get(f"/datasets/{manifest['id']}/shards/{shard}", headers=origin)
    assert response.headers["access-control-allow-origin"] == "*"
    assert "etag" in response.headers["access-control-expose-headers"].lower()


async def test_delete_keeps_shards_another_dataset_names(server, store):
    zipped = image_zip()[0]
    first = (await upload(server, zipped, name="one")).json()
    second = (await upload(server, zipped, name="two")).json()
    assert first["id"] != second["id"]
    shard = second["splits"]["train"]["shards"][0]["id"]
    assert (await server.delete(f"/datasets/{first['id']}", headers=ADMIN)).status_code == 204
    assert (await server.get(f"/datasets/{first['id']}")).status_code == 404
    assert (await server.get(f"/datasets/{second['id']}/shards/{shard}")).status_code == 200
    assert (await server.get(f"/datasets/{first['id']}/shards/{shard}")).status_code == 404
    assert (await server.delete(f"/datasets/{second['id']}", headers=ADMIN)).status_code == 204
    assert await store.keys() == []
    assert (await server.get("/datasets")).json() == {"datasets": []}


async def test_unknown_dataset_and_shard_are_404(server):
    manifest = (await upload(server, image_zip()[0])).json()
    for url in ("/datasets/nope", "/datasets/nope/shards/abc", f"/datasets/{manifest['id']}/shards/abc"):
        response = await server.get(url)
        assert response.status_code == 404 and "error" in response.json()
    assert (await server.delete("/datasets/nope", headers=ADMIN)).status_code == 404


async def test_admin_token_guards_upload_and_delete(server, store):
    zipped = image_zip()[0]
    assert (await upload(server, zipped, headers={})).status_code == 401
    assert (await upload(server, zipped, headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert await store.keys() == []
    manifest = (await upload(server, zipped)).json()
    assert (await server.delete(f"/datasets/{manifest['id']}")).status_code == 401
    assert (await server.delete(f"/datasets/{manifest['id']}", headers={"Authorization": "Bearer x"})).status_code == 401
    assert (await server.get(f"/datasets/{manifest['id']}")).status_code == 200


async def test_healthz(server):
    assert (await server.get("/healthz")).json() == {"ok": True}


def _truncated() -> bytes:
    whole = image_zip()[0]
    return whole[: len(whole) // 2]


def _bomb_by_ratio() -> bytes:
    return make_zip({"d/a/1.png": png(np.zeros((2, 2), np.uint8)), "d/b/huge.png": bytes(2_000_000)})


def _too_big_unpacked() -> bytes:
    rng = np.random.default_rng(0)
    entries = {f"d/{label}/{i}.bin.png": rng.bytes(30_000) for label in "ab" for i in range(4)}
    return make_zip(entries, zipfile.ZIP_STORED)


def _cut_png() -> bytes:
    whole = png(np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8))
    return whole[: len(whole) // 2]


def _corrupted_entry() -> bytes:
    noise = png(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    whole = bytearray(make_zip({"d/a/1.png": noise, "d/b/1.png": noise}))
    whole[200:260] = bytes(60)  # inside d/a/1.png's data; the central directory stays intact
    return bytes(whole)


def _with(extra: dict[str, bytes]) -> bytes:
    ok = np.zeros((2, 2), np.uint8)
    return make_zip({"d/a/1.png": png(ok), "d/b/1.png": png(ok), **extra})


BAD_UPLOADS = {
    "not a zip": (b"just some text", {}, "not a zip file", "train.zip"),
    "empty body": (b"", {}, "not a zip file", "train.zip"),
    "truncated zip": (_truncated(), {}, "truncated or damaged", "train.zip"),
    "zip bomb by ratio": (_bomb_by_ratio(), {}, "expands", "d/b/huge.png"),
    "zip bomb by total size": (_too_big_unpacked(), {}, "would unpack to more than", None),
    "dot-dot path": (_with({"d/../../evil/1.png": b"x"}), {}, "outside the zip", "d/../../evil/1.png"),
    "absolute path": (_with({"/etc/a/1.png": b"x"}), {}, "outside the zip", "/etc/a/1.png"),
    "symlink entry": (symlink_zip(), {}, "symbolic link", "d/b/link.png"),
    "no images": (make_zip({"d/a/readme.txt": b"hello"}), {}, "holds no images", "train.zip"),
    "corrupted entry data": (_corrupted_entry(), {}, "is damaged", "d/a/1.png"),
    "one class": (make_zip({"d/a/1.png": png(np.zeros((2, 2), np.uint8))}), {}, "single class", "train.zip"),
    "image outside a class folder": (_with({"loose.png": b"x"}), {}, "not in a class folder", "loose.png"),
    "undecodable image": (_with({"d/b/2.png": b"\x89PNG garbage"}), {}, "not an image", "d/b/2.png"),
    "damaged image data": (_with({"d/b/2.png": _cut_png()}), {}, "could not be decoded", "d/b/2.png"),
    "decompression-bomb image": (_with({"d/b/big.png": png_with_dimensions(8000, 8000)}), {}, "8000×8000", "d/b/big.png"),
    "pillow-sized bomb image": (_with({"d/b/big.png": png_with_dimensions(30000, 30000)}), {}, "dimensions", "d/b/big.png"),
    "too many classes": (image_zip(classes=tuple("abcdef"), per_class=1)[0], {}, "6 classes", "train.zip"),
    "bad size option": (image_zip()[0], {"size": "big"}, "WIDTHxHEIGHT", None),
    "bad channels option": (image_zip()[0], {"channels": "2"}, "channels", None),
    "bad holdout option": (image_zip()[0], {"holdout": "1.5"}, "holdout", None),
    "unknown option": (image_zip()[0], {"labels": "x"}, "unknown upload parameter", None),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
async def test_bad_upload_is_a_clear_400_and_leaves_no_trace(server, store, case):
    body, params, message, file = BAD_UPLOADS[case]
    kept = (await upload(server, image_zip()[0], name="kept")).json()
    before = await trace(store)
    response = await upload(server, body, **params)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    if file is not None:
        assert response.json()["file"] == file
    assert await trace(store) == before
    assert [d["id"] for d in (await server.get("/datasets")).json()["datasets"]] == [kept["id"]]


async def test_bad_upload_spooled_to_disk_leaves_no_open_temp_file(store):
    """Over 1 MiB, the upload goes to a temporary file on disk; a refusal must close (and so remove) it."""
    async with serve_app(create_data_app(store, TOKEN, bootstrap=False)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            before = await trace(store)
            response = await upload(client, np.random.default_rng(0).bytes(3 << 20), test=b"x" * (2 << 20))
            assert response.status_code == 400 and "not a zip" in response.json()["error"]
            assert await trace(store) == before


async def test_test_zip_with_unknown_class_is_refused(server, store):
    train = image_zip(classes=("a", "b"))[0]
    test = image_zip(classes=("a", "c"))[0]
    response = await upload(server, train, test)
    assert response.status_code == 400 and "lacks: c" in response.json()["error"]
    assert response.json()["file"] == "test.zip"
    assert await store.keys() == []


async def test_test_zip_and_holdout_together_are_refused(server, store):
    zipped = image_zip()[0]
    response = await upload(server, zipped, zipped, holdout="0.2")
    assert response.status_code == 400 and "not both" in response.json()["error"]
    assert await store.keys() == []


async def test_form_without_train_field_is_refused(server, store):
    response = await server.post("/datasets", files={"data": ("x.zip", image_zip()[0])}, headers=ADMIN)
    assert response.status_code == 400 and "'train'" in response.json()["error"]
    response = await server.post("/datasets", content=image_zip()[0], headers={**ADMIN, "Content-Type": "application/zip"})
    assert response.status_code == 400 and "multipart/form-data" in response.json()["error"]
    assert await store.keys() == []


async def test_upload_over_the_size_limit_is_413_with_or_without_content_length(server, store):
    big = np.random.default_rng(0).bytes(LIMITS.max_upload_bytes + 1000)
    response = await upload(server, big)
    assert response.status_code == 413 and "limit" in response.json()["error"]

    async def chunked():
        boundary = b"xyz"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="train"; filename="t.zip"\r\n\r\n'
        for start in range(0, len(big), 50_000):
            yield big[start : start + 50_000]
        yield b"\r\n--" + boundary + b"--\r\n"

    response = await server.post(
        "/datasets", content=chunked(), headers={**ADMIN, "Content-Type": "multipart/form-data; boundary=xyz"}
    )
    assert response.status_code == 413
    assert await store.keys() == []
