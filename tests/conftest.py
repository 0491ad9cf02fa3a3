"""Shared fixtures: benchmark data (generated, or the real mirror), a loopback
OpenAI-compatible server, and throwaway git projects."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.openai_server import fake_openai_server
from tests.support.synthetic_data import write_mirror

REPO = Path(__file__).resolve().parents[1]

# The real benchmark data mirror, for the tests whose subject is the real datasets:
# LPO_CI_DATA_DIR as given, else the mirror beside the checkout.
# Kept in the environment too, for the pytest-xdist workers started after LPO_CI_DATA_DIR changes.
REAL_DATA_DIR = Path(os.environ.get("LPO_CI_TESTS_REAL_DATA_DIR") or os.environ.get("LPO_CI_DATA_DIR")
                     or REPO.parent / "shared" / "data")
os.environ["LPO_CI_TESTS_REAL_DATA_DIR"] = str(REAL_DATA_DIR)
REAL_DATA_HINT = ("set LPO_CI_DATA_DIR to a mirror of the benchmark data laid out as gsm8k/test.jsonl, "
                  "multiarith/MultiArith.jsonl and bbh/<task>.json")

# Every other test, and every process it starts, reads generated data in the same layout: the
# mechanics under test never depend on the real mirror being there.
_generated = Path(tempfile.mkdtemp(prefix="lpo-ci-test-data-"))
atexit.register(shutil.rmtree, _generated, ignore_errors=True)
GENERATED_DATA_DIR = write_mirror(_generated)
os.environ["LPO_CI_DATA_DIR"] = str(GENERATED_DATA_DIR)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def data_dir() -> Path:
    """The generated benchmark mirror (what LPO_CI_DATA_DIR points at during the tests)."""
    return GENERATED_DATA_DIR


@pytest.fixture
def real_data_dir() -> Path:
    """The real benchmark mirror; tests whose subject is the real datasets skip without it."""
    if not (REAL_DATA_DIR / "bbh").is_dir():
        pytest.skip(f"real benchmark data mirror not found at {REAL_DATA_DIR}: {REAL_DATA_HINT}")
    return REAL_DATA_DIR


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
