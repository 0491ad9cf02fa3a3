"""Shared fixtures: the benchmark data mirror, a loopback OpenAI-compatible server,
and throwaway git projects."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.openai_server import fake_openai_server

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"

# Tests read the benchmark data from a local mirror, never from the hub.
os.environ.setdefault("LPO_CI_DATA_DIR", str(DEFAULT_DATA_DIR))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def data_dir() -> Path:
    path = Path(os.environ["LPO_CI_DATA_DIR"])
    if not (path / "bbh").is_dir():
        pytest.skip(f"benchmark data mirror not found at {path} (set LPO_CI_DATA_DIR)")
    return path


@pytest.fixture
def openai_server():
    """A real OpenAI-compatible HTTP server on 127.0.0.1 whose accuracy depends on wording."""
    with fake_openai_server() as server:
        yield server


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, env=env).stdout


@pytest.fixture
def git_repo(tmp_path: Path):
    """A fresh git repository on branch main; returns a commit(message) helper."""
    git(tmp_path, "init", "-q", "-b", "main")

    def commit(message: str = "change") -> str:
        git(tmp_path, "add", "-A")
        git(tmp_path, "commit", "-q", "-m", message)
        return git(tmp_path, "rev-parse", "HEAD").strip()

    return commit
