"""Every common mistake gives one line naming what was wrong and what to do, and exit status 1.

Each mistake is made as a person makes it: a command in a shell, against
real servers (a two-port `mlitb serve`, so the data server's own port is
there to be mistaken for the master's).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.cli_support import Serve, cli, one_line_error
from tests.datazips import png
from tests.helpers import free_port, wait_for_port


@pytest.fixture(scope="module")
def serve(tmp_path_factory, mnist_dir) -> Iterator[Serve]:
    data_port = free_port()
    running = Serve(tmp_path_factory.mktemp("mistakes"), ("--data-port", str(data_port))).start(mnist_dir)
    running.data_port = data_port  # type: ignore[attr-defined]
    wait_for_port(data_port, timeout=60, process=running.proc)
    try:
        yield running
    finally:
        running.stop()


def test_a_master_url_without_a_scheme(tmp_path):
    done = cli(tmp_path, "worker", "--master", "127.0.0.1:18500")
    one_line_error(done, "'127.0.0.1:18500' is not a URL", "http://127.0.0.1:18500")
    # A volunteer's share link pasted as the master's URL.
    done = cli(tmp_path, "worker", "--master", "http://127.0.0.1:18500/?project=demo")
    one_line_error(done, "has a query", "http://127.0.0.1:18500", "--project ID")


def test_a_port_where_nothing_answers(tmp_path):
    port = free_port()
    done = cli(tmp_path, "worker", "--master", f"http://127.0.0.1:{port}")
    one_line_error(done, f"nothing answers at http://127.0.0.1:{port}", "connection refused", "port")


def test_the_data_servers_port_instead_of_the_masters(serve):
    done = cli(serve.home, "worker", "--master", f"http://127.0.0.1:{serve.data_port}")
    one_line_error(done, f"http://127.0.0.1:{serve.data_port} is an mlitb data server, not the master")


def test_an_unknown_project(serve):
    for args in (["worker", "--project", "nope"], ["project", "show", "nope"], ["project", "start", "nope"]):
        one_line_error(serve.cli(*args), f"the master at {serve.url} has no project 'nope'", "mlitb project list")


def test_predict_and_export_with_an_image_where_the_closure_goes(tmp_path):
    (tmp_path / "digit.png").write_bytes(png(np.zeros((28, 28), np.uint8)))
    one_line_error(cli(tmp_path, "predict", "digit.png", "closure.json"),
                   "digit.png is a PNG image, not a closure JSON file", "the closure comes first")
    one_line_error(cli(tmp_path, "export", "digit.png"), "digit.png is a PNG image, not a closure JSON file")


def test_port_in_use_says_which_port(serve, tmp_path):
    done = cli(tmp_path, "serve", "--port", str(serve.port), "--data-dir", str(tmp_path / "a"))
    one_line_error(done, f"cannot listen on 127.0.0.1:{serve.port} (--port)", "choose another with --port")
    done = cli(tmp_path, "serve", "--port", str(free_port()), "--data-port", str(serve.data_port),
               "--data-dir", str(tmp_path / "b"))
    one_line_error(done, f"cannot listen on 127.0.0.1:{serve.data_port} (--data-port)")


def test_a_second_serve_on_the_same_data_dir_names_the_pid(serve, tmp_path):
    done = cli(tmp_path, "serve", "--port", str(free_port()), "--data-dir", str(serve.home / "var"))
    one_line_error(done, f"another mlitb serve (PID {serve.proc.pid}) is using the data directory", "--data-dir")


def test_a_wrong_token_is_refused_before_the_upload(serve, tmp_path):
    one_line_error(serve.cli("project", "pause", "x", "--token", "wrong"), f"the master at {serve.url} refused the admin token")
    zipped = tmp_path / "big.zip"
    zipped.write_bytes(b"PK\x03\x04" + bytes(1 << 20))
    done = serve.cli("data", "add", str(zipped), "--token", "wrong")
    one_line_error(done, f"the data server at http://127.0.0.1:{serve.data_port} refused the admin token")
    assert "uploading" not in done.stderr, "the body must not be sent with a refused token"


def test_no_token_anywhere(tmp_path):
    done = cli(tmp_path, "project", "start", "x", "--master", f"http://127.0.0.1:{free_port()}")
    one_line_error(done, "needs the admin token", "--token", "MLITB_ADMIN_TOKEN")
