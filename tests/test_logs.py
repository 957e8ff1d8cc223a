"""One log format, the progress line, help text for every option, and progress bars only on a terminal."""

from __future__ import annotations

import argparse
import io
import logging
import re

from mlitb.cli import build_parser
from mlitb.cli.config_cmd import variables
from mlitb.data.client import ProgressBar
from mlitb.logs import progress_line, setup
from tests.helpers import REPO


def test_progress_line_names_iteration_loss_accuracy_trainers_and_speed():
    record = {"iteration": 120, "train_loss": 0.31234, "test_accuracy": 0.9712, "examples_per_s": 5321.4}
    assert progress_line("mnist-demo", record, 3) == (
        "project mnist-demo: iteration 120, train loss 0.3123, test accuracy 97.1%, 3 trainers, 5,321 examples/s")
    # An iteration with no results and no evaluation yet: dashes, never "None" or "nan".
    empty = progress_line("p", {"iteration": 4, "train_loss": None, "examples_per_s": float("nan")}, 1)
    assert empty == "project p: iteration 4, train loss -, test accuracy -, 1 trainer, - examples/s"


def test_one_format_with_timestamp_level_and_source():
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup("warning", stream=out)
        logging.getLogger("mlitb.master").info("hidden below the level")
        logging.getLogger("mlitb.master").warning("project p paused")
        logging.getLogger("uvicorn.error").error("port trouble")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    date, time, level, source, *message = lines[0].split()
    assert len(date) == 10 and len(time) == 8 and level == "WARNING" and source == "mlitb.master:"
    assert " ".join(message) == "project p paused" and "ERROR   uvicorn.error: port trouble" in lines[1]


def _options(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_has_help_text_and_serve_help_names_the_environment():
    missing = [f"{path} {action.option_strings or action.dest}" for path, action in _options(build_parser(), "mlitb")
               if not action.help]
    assert missing == []
    serve = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for name in ("MLITB_PUBLIC_URL", "MLITB_DATA_DIR", "MLITB_REDIS_URL", "MLITB_ADMIN_TOKEN", "mlitb config"):
        assert name in serve


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_upload_bar_is_drawn_on_a_terminal_only():
    terminal, log = _Terminal(), io.StringIO()
    for out in (terminal, log):
        bar = ProgressBar(total=4 * 2**20, out=out)
        for _ in range(4):
            bar.update(2**20)
    assert "\r" in terminal.getvalue() and "100%" in terminal.getvalue()
    assert "\r" not in log.getvalue() and log.getvalue().splitlines() == ["uploading 4.0 MiB...",
                                                                         "sent; ingesting on the server..."]


def test_mlitb_config_lists_every_variable_the_code_reads(monkeypatch):
    read = {name for path in (REPO / "mlitb").rglob("*.py") for name in re.findall(r"MLITB_[A-Z_]+", path.read_text())}
    monkeypatch.setenv("MLITB_ADMIN_TOKEN", "secret")
    monkeypatch.setenv("MLITB_MAX_CONNECTIONS", "7")
    rows = {row["name"]: row for row in variables()}
    assert read - set(rows) == set()
    assert rows["MLITB_ADMIN_TOKEN"]["value"] == "(set)", "a secret is never printed"
    assert rows["MLITB_MAX_CONNECTIONS"]["value"] == "7"
