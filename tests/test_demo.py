"""The README's main job, for real: `lpo-ci demo` on the embedded local model."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from lpo_ci import local_model
from lpo_ci.cli import main
from lpo_ci.demo import examples_dir

pytestmark = pytest.mark.skipif(not local_model.is_available(), reason=local_model.INSTALL_HINT)


@pytest.mark.slow
def test_demo_catches_the_regression_with_the_local_model(tmp_path, capsys):
    cache = str(tmp_path / "cache")
    status = main(["demo", "--keep", str(tmp_path), "--cache-dir", cache])
    out = capsys.readouterr().out
    assert status == 0
    assert "prompts/review_sentiment.j2:1: FAIL: regression" in out
    assert "one-sided exact McNemar p = " in out
    assert "the embedded local model (offline, no key)" in out
    assert "The gate caught the regression" in out
    assert "LPO (local): suggested: " in out and "held-out accuracy" in out
    assert "reverting your change restores" in out  # the revert, reported apart
    assert "+Review: I love it, works great." in out  # the fix restores the few-shot examples
    repo = tmp_path / "review-sentiment"
    log = subprocess.run(["git", "-C", str(repo), "log", "--oneline"], capture_output=True, text=True).stdout
    assert len(log.splitlines()) == 1  # the base commit; the pull request is the working tree
    assert "Review: I love it" not in (repo / "prompts/review_sentiment.j2").read_text()

    # Rerun from scratch with the same cache: every response comes from it.
    status = main(["demo", "--keep", str(tmp_path), "--cache-dir", cache])
    out = capsys.readouterr().out
    assert status == 0 and "0 calls, 96 cache hits" in out
    assert "LPO suggested" in out and "; 0 calls, $0.0000)" in out  # the search replays from the cache


@pytest.mark.slow
def test_the_bbh_boolean_demo_catches_its_regression(tmp_path, capsys, monkeypatch, real_data_dir):
    """Every shipped example with a demo scenario runs (review-sentiment above): the BIG-bench
    Hard example drops its worked examples, and the gate catches it on the real data."""
    monkeypatch.setenv("LPO_CI_DATA_DIR", str(real_data_dir))
    status = main(["demo", "--example", "bbh-boolean", "--keep", str(tmp_path),
                   "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "prompts/boolean_expressions.j2:1: FAIL: regression" in out
    assert "The gate caught the regression" in out


def test_every_example_with_a_demo_has_a_patch_that_applies(tmp_path):
    from lpo_ci.demo import available_examples

    for name in available_examples():
        shutil.copytree(examples_dir() / name, tmp_path / name)
        subprocess.run(["git", "init", "-q"], cwd=tmp_path / name, check=True)
        subprocess.run(["git", "apply", "--check", "demo-pr.patch"], cwd=tmp_path / name, check=True)


def test_unknown_example_is_a_clear_error(capsys):
    assert main(["demo", "--example", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no demo example named 'nope'" in err and "review-sentiment" in err
