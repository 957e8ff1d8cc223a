"""Limits come from the environment; a bad value names its variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlitb.config import ConfigError, documented_variables, from_env
from mlitb.data.limits import Limits
from mlitb.master.settings import Settings
from tests.helpers import REPO, free_port


def test_environment_overrides_numeric_fields():
    env = {"MLITB_MAX_FRAME_BYTES": "1024", "MLITB_MAX_CONNECTIONS": "3", "MLITB_MAX_GRAD_NORM_PER_EXAMPLE": "50"}
    settings = from_env(Settings, env, admin_token="t", data_url="http://d")
    assert (settings.max_frame_bytes, settings.max_connections, settings.max_grad_norm_per_example) == (1024, 3, 50.0)
    assert settings.cache_shards == Settings.cache_shards


def test_explicit_values_win_over_the_environment():
    settings = from_env(Settings, {"MLITB_CHECKPOINT_EVERY": "7"}, admin_token="t", data_url="d", checkpoint_every=2)
    assert settings.checkpoint_every == 2


def test_data_limits_too():
    assert from_env(Limits, {"MLITB_MAX_UPLOAD_BYTES": "2048"}).max_upload_bytes == 2048


@pytest.mark.parametrize("text, words", [("many", "not a whole number"), ("1.5", "not a whole number"), ("0", "greater than 0")])
def test_bad_values_name_the_variable(text, words):
    with pytest.raises(ConfigError, match=f"MLITB_MAX_CONNECTIONS='{text}'.*{words}"):
        from_env(Settings, {"MLITB_MAX_CONNECTIONS": text}, admin_token="t", data_url="d")


def test_documented_variables_cover_the_trust_limits():
    names = documented_variables(Settings) + documented_variables(Limits)
    assert {"MLITB_MAX_FRAME_BYTES", "MLITB_MAX_CONNECTIONS", "MLITB_MAX_UPLOAD_BYTES"} <= set(names)


def test_serve_refuses_a_bad_limit_naming_the_variable(tmp_path):
    env = {**os.environ, "MLITB_MAX_UPLOAD_BYTES": "lots", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mlitb.cli", "serve", "--port", str(free_port()), "--data-port", str(free_port()),
         "--data-dir", str(tmp_path / "data")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "MLITB_MAX_UPLOAD_BYTES='lots' is not a whole number" in done.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("manifest"))


def test_deploy_doc_lists_every_variable():
    text = (REPO / "docs" / "deploy.md").read_text()
    missing = [name for name in documented_variables(Settings) + documented_variables(Limits) if name not in text]
    assert not missing, f"docs/deploy.md does not document {missing}"


def test_zero_turns_spot_checks_off_but_is_refused_elsewhere():
    assert from_env(Settings, {"MLITB_VERIFY_QUEUE": "0"}, admin_token="x", data_url="y").verify_queue == 0
    with pytest.raises(ConfigError, match="MLITB_MAX_CONNECTIONS='0' must be greater than 0"):
        from_env(Settings, {"MLITB_MAX_CONNECTIONS": "0"}, admin_token="x", data_url="y")
