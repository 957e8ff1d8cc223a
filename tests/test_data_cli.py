"""`mlitb data add` and `mlitb data serve`, as a person runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import httpx
import numpy as np

from mlitb.cli import main
from mlitb.data.app import create_data_app
from mlitb.store import FileStore
from tests.datazips import image_zip, png
from tests.helpers import DATASETS, REPO, free_port, serve_app, wait_for_port


async def test_data_add_uploads_with_test_zip_or_holdout(tmp_path, monkeypatch, capsys):
    store = FileStore(tmp_path / "store")
    train, test = tmp_path / "train.zip", tmp_path / "test.zip"
    train.write_bytes(image_zip(per_class=6)[0])
    test.write_bytes(image_zip(per_class=2, seed=5)[0])
    monkeypatch.setenv("MLITB_ADMIN_TOKEN", "tok")
    async with serve_app(create_data_app(store, "tok", bootstrap=False)) as url:
        code = await asyncio.to_thread(main, ["data", "add", str(train), "--server", url, "--test-zip", str(test), "--name", "pets"])
        assert code == 0
        out, err = capsys.readouterr()
        assert "uploading" in err and "\r" not in err and "18 train + 6 test" in err  # no bar off a terminal
        async with httpx.AsyncClient(base_url=url) as client:
            manifest = (await client.get(f"/datasets/{out.strip()}")).json()
        assert manifest["name"] == "pets" and manifest["splits"]["test"]["count"] == 6

        args = ["data", "add", str(train), "--server", url, "--holdout", "0.5", "--size", "3x2", "--channels", "3"]
        assert await asyncio.to_thread(main, args) == 0
        out, err = capsys.readouterr()
        assert "3x2x3, 9 train + 9 test" in err


async def test_data_add_reports_the_servers_error(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    monkeypatch.setenv("MLITB_ADMIN_TOKEN", "tok")
    async with serve_app(create_data_app(FileStore(tmp_path / "s"), "tok", bootstrap=False)) as url:
        assert await asyncio.to_thread(main, ["data", "add", str(bad), "--server", url]) == 1
    assert f"the data server at {url} answered 400: bad.zip is not a zip file" in capsys.readouterr().err


async def test_data_append_grows_the_train_split_or_prints_the_refusal(tmp_path, monkeypatch, capsys):
    store = FileStore(tmp_path / "store")
    train, more, fish = tmp_path / "train.zip", tmp_path / "more.zip", tmp_path / "fish.zip"
    train.write_bytes(image_zip(per_class=6)[0])
    more.write_bytes(image_zip(classes=("cat", "dog"), per_class=2, seed=7)[0])
    fish.write_bytes(image_zip(classes=("cat", "fish"), per_class=2, seed=8)[0])
    picture = tmp_path / "dog.png"
    picture.write_bytes(png(np.full((5, 6), 200, dtype=np.uint8)))
    monkeypatch.setenv("MLITB_ADMIN_TOKEN", "tok")
    async with serve_app(create_data_app(store, "tok", bootstrap=False)) as url:
        assert await asyncio.to_thread(main, ["data", "add", str(train), "--server", url, "--holdout", "0.5"]) == 0
        dataset_id = capsys.readouterr().out.strip()

        assert await asyncio.to_thread(main, ["data", "append", dataset_id, str(more), "--server", url]) == 0
        out, err = capsys.readouterr()
        assert out == f"dataset {dataset_id}: 13 train examples, revision 1\n" and "sent; ingesting" in err
        args = ["data", "append", dataset_id, "--image", str(picture), "--label", "dog", "--server", url]
        assert await asyncio.to_thread(main, args) == 0
        assert capsys.readouterr().out == f"dataset {dataset_id}: 14 train examples, revision 2\n"

        assert await asyncio.to_thread(main, ["data", "append", dataset_id, str(fish), "--server", url]) == 1
        out, err = capsys.readouterr()
        assert out == "" and f"400: dataset {dataset_id!r} has no class 'fish'" in err and "(file: fish.zip)" in err
        async with httpx.AsyncClient(base_url=url) as client:
            manifest = (await client.get(f"/datasets/{dataset_id}")).json()
        assert manifest["revision"] == 2 and manifest["splits"]["train"]["count"] == 14


def test_data_append_needs_a_zip_or_a_labelled_image(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLITB_ADMIN_TOKEN", "tok")
    assert main(["data", "append", "d", "--image", str(tmp_path / "x.png")]) == 2
    assert "--image needs --label" in capsys.readouterr().err
    assert main(["data", "append", "d"]) == 2
    assert "give a ZIP or --image" in capsys.readouterr().err


async def test_data_list_follows_mlitb_data_url(tmp_path, monkeypatch, capsys):
    """The variable that tells the master where the data server is tells the CLI too."""
    monkeypatch.setenv("MLITB_MASTER_URL", f"http://127.0.0.1:{free_port()}")  # nothing there: must not be asked
    async with serve_app(create_data_app(FileStore(tmp_path / "store"), "tok", bootstrap=False)) as url:
        monkeypatch.setenv("MLITB_DATA_URL", url)
        assert await asyncio.to_thread(main, ["data", "list"]) == 0
        assert f"no datasets at {url}" in capsys.readouterr().out


def test_data_add_needs_the_admin_token(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLITB_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("MLITB_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./var/admin-token here
    assert main(["data", "add", str(DATASETS / "mnist-test.zip")]) == 1
    assert "MLITB_ADMIN_TOKEN" in capsys.readouterr().err


async def test_data_serve_runs_alone_with_mnist(tmp_path):
    port = free_port()
    env = {**os.environ, "MLITB_ADMIN_TOKEN": "tok", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "mlitb.cli", "data", "serve", "--port", str(port), "--data-dir", str(tmp_path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(wait_for_port, port, 60.0, process)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            [manifest] = (await client.get("/datasets")).json()["datasets"]
        assert manifest["name"] == "mnist"
    finally:
        process.terminate()
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean shutdown
